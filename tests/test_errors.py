"""The decoder boundary: whatever a library raises on a user's file becomes one line."""

import json
import threading
import warnings

import pytest

from mnist_jax.errors import CheckpointError, DataError, MnistJaxError, decoding


def raise_(error: Exception) -> None:
    raise error


@pytest.mark.parametrize(
    ("fail", "detail"),
    [
        (lambda: json.loads("[" * 100_000), "(nested too deeply)"),
        (lambda: json.loads("7" * 5000), "(Exceeds the limit (4300 digits)"),
        (lambda: {}["MPO"], "(KeyError: 'MPO')"),
        (lambda: compile("(", "x", "eval"), "(" + "'(' was never closed"),  # a SyntaxError
        (lambda: b"\xff".decode(), "('utf-8' codec can't decode byte 0xff"),
        (lambda: raise_(OSError("broken\nacross lines")), "(broken across lines)"),
    ],
)
def test_whatever_a_decoder_raises_is_one_line_naming_the_file(fail, detail):
    with pytest.raises(CheckpointError) as caught, decoding("m.st", "not JSON", CheckpointError):
        fail()
    assert str(caught.value).startswith(f"m.st: not JSON {detail}")
    assert "\n" not in str(caught.value)


def test_the_projects_own_errors_pass_unchanged():
    own = DataError("x.png: PNG header says 9x9, more than the 4 read")
    with pytest.raises(DataError) as caught, decoding("x.png", "not a readable PNG image"):
        raise own
    assert caught.value is own


def test_a_warning_joins_the_line_when_decoding_fails_and_is_dropped_when_it_works(recwarn):
    failed = pytest.raises(DataError, match=r"\(truncated; Corrupt EXIF data\)$")
    with failed, decoding("x.tif", "not a readable TIFF image"):
        warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=1)
        raise OSError("truncated")
    with decoding("x.tif", "not a readable TIFF image"):
        warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=1)
    assert len(recwarn) == 0


def test_decoders_on_several_threads_leave_the_warning_filters_as_they_were():
    before = list(warnings.filters)
    errors: list[MnistJaxError] = []

    def decode() -> None:
        for _ in range(50):
            try:
                with decoding("x", "unreadable"):
                    warnings.warn("noise", UserWarning, stacklevel=1)
                    raise ValueError("bad")
            except MnistJaxError as e:
                errors.append(e)

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before and len(errors) == 200
    assert {str(e) for e in errors} == {"x: unreadable (bad; noise)"}
