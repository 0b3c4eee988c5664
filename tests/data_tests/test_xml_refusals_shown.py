"""The XML refusals show characters that print as nothing or garbage escaped: a CVAT file whose name
holds U+FFFE or an ESC (refused for its DOCTYPE, or as not well-formed), and a class name XML cannot
hold (``predict --export cvat``), were printed with those characters raw."""

from types import SimpleNamespace

import pytest

from maskrcnn.cli import main
from maskrcnn.data.pre_annotations.xml_text import check_xml_names

DOCTYPE = '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY e "x">]>\n<annotations>&e;</annotations>\n'
BAD_CHAR = '<?xml version="1.0"?>\n<annotations><meta/>\x01</annotations>\n'


@pytest.mark.parametrize("text, words", [(DOCTYPE, ": has a DOCTYPE declaration (refused"),
                                         (BAD_CHAR, ": line 2, column 20: not well-formed XML")])
def test_a_cvat_files_name_is_shown_escaped_in_its_refusal(tmp_path, capsys, text, words):
    src = tmp_path / "cv\ufffeat\x1b.xml"
    src.write_text(text)
    assert main(["convert-data", "--from", "cvat", str(src), "--output", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert "'" + str(tmp_path) + "/cv\\ufffeat\\x1b.xml'" + words in err, err
    assert "\ufffe" not in err and "\x1b" not in err and "Traceback" not in err


@pytest.mark.parametrize("name, shown", [("a\ufffeb", "'a\\ufffeb'"), ("a\x1bb", "'a\\x1bb'"),
                                         ("a\\b\uffff", "'a\\\\b\\uffff'")])
def test_a_class_name_xml_cannot_hold_is_shown_escaped(name, shown):
    with pytest.raises(ValueError) as e:
        check_xml_names([SimpleNamespace(label=1, name=name)], "cvat")
    assert str(e.value).startswith(f"--export cvat: class 0 {shown} holds the character U+")
    assert str(e.value).isprintable()


def test_names_without_hidden_characters_are_shown_as_before():
    from maskrcnn.data.pre_annotations.xml_text import shown_in_message

    assert shown_in_message("cat") == "cat" and shown_in_message("a\nb") == "'a\\nb'"
    assert shown_in_message("猫 🐱") == "猫 🐱"
