"""Model definitions; importing this package registers every named model."""
from resbone.models import registry, resnet, variants  # noqa: F401  (registration side effects)
from resbone.models import mobilenetv2  # noqa: F401  (registers mobilenet_v2)
from resbone.models import reid  # noqa: F401  (registers SE / IBN / re-id variants)
