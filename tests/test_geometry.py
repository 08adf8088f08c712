"""xclip_core.geometry: the resize rule against transformers' own (the oracle) and the crop box."""
import numpy as np
import pytest
from transformers.image_transforms import get_resize_output_image_size
from transformers.image_utils import ChannelDimension

from xclip_core.geometry import crop_box, resize_shape


@pytest.mark.parametrize("w,h", [(1280, 720), (180, 320), (16, 16), (225, 224), (224, 225), (333, 197),
                                 (197, 333), (1919, 1079), (7, 1001), (639, 361)])
@pytest.mark.parametrize("edge", [224, 256, 97])
def test_resize_shape_matches_transformers(w, h, edge):
    image = np.zeros((h, w, 3), np.uint8)
    new_h, new_w = get_resize_output_image_size(image, edge, default_to_square=False,
                                                input_data_format=ChannelDimension.LAST)
    assert resize_shape(w, h, edge) == (new_w, new_h)


def test_crop_box_centres_the_crop():
    assert resize_shape(1280, 720, 224) == (398, 224)
    assert resize_shape(180, 320, 224) == (224, 398)
    assert resize_shape(16, 16, 224) == (224, 224)
    assert crop_box(1280, 720, 224, 224) == (398, 224, 0, 87)
    assert crop_box(180, 320, 224, 224) == (224, 398, 87, 0)
    assert crop_box(333, 197, 256, 224) == (432, 256, 16, 104)
