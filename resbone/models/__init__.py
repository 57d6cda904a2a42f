"""Model definitions; importing this package registers every named model."""
from resbone.models import (  # noqa: F401  (registration side effects)
    mobilenetv2,  # noqa: F401  (registers mobilenet_v2)
    registry,
    reid,  # noqa: F401  (registers SE / IBN / re-id variants)
    resnet,
    variants,
)
