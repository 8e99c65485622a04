import cv2
import numpy as np
import pytest
import skimage.data

from tests.helpers.images import png_claiming
from training.face.align import ARCFACE_TEMPLATE, align_arcface, similarity_matrix
from training.face.errors import ImageReadError, ImageTooSmallError, MultipleFacesError, NoFaceError
from training.face.pipeline import FacePipeline, read_image_rgb


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return FacePipeline(detector="dlib", multi_face="error")


def test_similarity_recovers_a_known_transform():
    # Template rotated by 10°, scaled ×2 and shifted: the estimated matrix must undo exactly that.
    a = np.deg2rad(10)
    r = 2 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = ARCFACE_TEMPLATE @ r.T + np.array([30.0, 40.0])
    m = similarity_matrix(pts)
    back = pts @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(back, ARCFACE_TEMPLATE, atol=1e-3)


def test_align_output_is_uint8_112():
    img = skimage.data.astronaut()
    out = align_arcface(img, ARCFACE_TEMPLATE + 100)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8


def test_astronaut_gives_one_aligned_face(pipe):
    face = pipe.process(skimage.data.astronaut())
    assert face.arcface112.shape == (112, 112, 3) and face.dlib150.shape == (150, 150, 3)
    le, re, nose, lm, rm = face.landmarks5
    assert le[0] < re[0] and max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])
    # Eileen Collins' face is in the upper middle of the 512×512 photo.
    assert 150 < nose[0] < 300 and 50 < nose[1] < 250


def test_missing_file(pipe, tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        pipe.process_file(tmp_path / "nobody.jpg")


def test_corrupt_file(pipe, tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    with pytest.raises(ImageReadError, match="not a readable image"):
        pipe.process_file(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError):
        read_image_rgb(empty)


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (30_000, 30_000), (8_000, 6_500)])
def test_huge_claimed_size_is_refused_before_decoding(tmp_path, width, height):
    """Over MAX_IMAGE_PIXELS (50 MP) by the header alone: 10^10 px (over OpenCV's and Pillow's own limits,
    once a cv2.error), 9·10^8 px (under OpenCV's 2^30: it would try to allocate 2.7 GB), 52 MP."""
    p = tmp_path / "bomb.png"
    p.write_bytes(png_claiming(width, height))
    with pytest.raises(ImageReadError, match=f"claims {width * height:,} pixels, more than the 50,000,000"):
        read_image_rgb(p)


def test_huge_image_in_a_format_pillow_does_not_read(tmp_path):
    """Radiance HDR (OpenCV reads it, Pillow does not): OpenCV's own pixel limit, as a message."""
    p = tmp_path / "bomb.hdr"
    p.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100000 +X 100000\n\x02\x02\x00\x00")
    with pytest.raises(ImageReadError, match="OpenCV cannot decode it"):
        read_image_rgb(p)


def test_no_face(pipe):
    with pytest.raises(NoFaceError):
        pipe.process(skimage.data.coffee())  # a cup of coffee, no face


def test_too_small_image(pipe):
    with pytest.raises(ImageTooSmallError, match="at least"):
        pipe.process(np.zeros((30, 30, 3), np.uint8))


def test_wrong_array_kind(pipe):
    with pytest.raises(ImageReadError, match="uint8"):
        pipe.process(np.zeros((100, 100), np.float32))


def test_several_faces_policy(lfw_dir):
    a = read_image_rgb(lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    b = read_image_rgb(lfw_dir / "Bill_Gates" / "Bill_Gates_0001.jpg")
    both = np.concatenate([a, b], axis=1)  # two comparable faces side by side
    with pytest.raises(MultipleFacesError, match="comparable"):
        FacePipeline(multi_face="error").process(both)
    # "largest"/"center" pick one of them; "center" of a 500-wide image: either is 125 px away, so
    # shift the canvas to make the right one central.
    shifted = np.concatenate([a, b, np.zeros_like(a)[:, :100]], axis=1)
    face = FacePipeline(multi_face="center").process(shifted)
    assert face.landmarks5[2, 0] > 250  # nose of the right-hand face


def test_grey_and_png_inputs_are_read_as_rgb(tmp_path):
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    p = tmp_path / "grey.png"
    cv2.imwrite(str(p), grey)
    img = read_image_rgb(p)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
