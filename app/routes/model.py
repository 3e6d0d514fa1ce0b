"""The loaded model's identity and contract."""

from fastapi import APIRouter

from labelcut.app.deps import ReadyService
from labelcut.app.schemas import ModelInfo

router = APIRouter(tags=["model"])


@router.get("/model", response_model=ModelInfo, summary="The loaded model")
def model_info(service: ReadyService) -> ModelInfo:
    model = service.loaded_model
    return ModelInfo(
        name=model.name,
        version=str(model.version),
        sha256=model.sha256,
        format=model.format,
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        input_shape=list(model.input_shape),
        labels=list(model.labels),
        feature_names=list(model.feature_names) if model.feature_names else None,
        activation=getattr(model, "activation", "sigmoid"),
        outputs=getattr(model, "outputs", "logits"),
    )
