"""Every network family. Adding a network: write its module, then add one import line here."""

from . import alexnet, lenet  # noqa: F401
from . import zfnet  # noqa: F401
from . import vgg  # noqa: F401
from . import nin  # noqa: F401
from . import allcnn  # noqa: F401
from . import dilated  # noqa: F401
from . import rnn  # noqa: F401
from . import googlenet  # noqa: F401
from . import resnet  # noqa: F401
from . import resnext  # noqa: F401
from . import densenet  # noqa: F401
from . import resnet9  # noqa: F401


def custom_layers():
    """Import the suite's own layer classes (Keras) so saved models holding them load in safe mode."""
    from .. import augment, whiten  # noqa: F401
    from . import custom  # noqa: F401
