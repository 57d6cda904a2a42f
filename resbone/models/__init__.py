"""Model definitions; importing this package registers every named model."""
from resbone.models import registry, resnet, variants  # noqa: F401  (registration side effects)
