"""The one line every failure prints: ``what (hint: how)``, a closing full stop dropped, an ellipsis kept."""

from loce_cli.errors import LoceError


def test_one_line_drops_the_full_stop_but_keeps_an_ellipsis():
    assert LoceError("file x does not exist.", "check the path.").one_line() == \
        "file x does not exist (hint: check the path)"
    assert LoceError("bad prefix", "set data.train.img_prefix=...").one_line() == \
        "bad prefix (hint: set data.train.img_prefix=...)"
    assert LoceError("no hint here").one_line() == "no hint here"
