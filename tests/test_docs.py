"""Pictures linked from the READMEs: each one is in the repository, a PNG or JPEG, and small.

A picture link that points nowhere renders as a broken icon on GitHub and PyPI, and a large one
bloats every clone; both are easy to miss in review. Remote images (the Colab badges) are left
alone; a local link must be relative and stay inside the repository.
"""

import pathlib
import re

from jaxpapers import testing

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_BYTES = 300 * 1024
# Markdown `![alt](target "title")` and HTML `<img src="target">`.
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def image_links(text: str) -> list[str]:
    return _MD_IMAGE.findall(text) + _HTML_IMAGE.findall(text)


def link_problems(readme: pathlib.Path, root: pathlib.Path) -> list[str]:
    """One line per local image link of ``readme`` that is missing, outside ``root``, not a
    PNG/JPEG or over MAX_BYTES."""
    problems = []
    for target in image_links(readme.read_text(encoding="utf-8")):
        if re.match(r"(?i)^(?:[a-z][a-z0-9+.-]*:|//)", target):
            continue  # remote (https://..., data:...): not a file of the repository
        where = f"{readme.relative_to(root)}: {target}"
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path.startswith("/"):
            problems.append(f"{where}: absolute link, use one relative to the README")
            continue
        file = (readme.parent / path).resolve()
        if not file.is_relative_to(root.resolve()):
            problems.append(f"{where}: points outside the repository")
        elif not file.is_file():
            problems.append(f"{where}: no such file")
        else:
            head = file.read_bytes()[:8]
            if not any(head.startswith(m) for m in _MAGIC):
                problems.append(f"{where}: not a PNG or JPEG")
            if file.stat().st_size > MAX_BYTES:
                problems.append(f"{where}: {file.stat().st_size} bytes > {MAX_BYTES}")
    return problems


def _readmes() -> list[pathlib.Path]:
    out = testing.checkout_files(str(ROOT))
    return [
        ROOT / f
        for f in out
        if pathlib.Path(f).name.lower().startswith("readme") and (ROOT / f).is_file()
    ]


def test_readme_images_exist_and_are_small_png_or_jpeg():
    readmes = _readmes()
    assert ROOT / "README.md" in readmes
    problems = [p for r in readmes for p in link_problems(r, ROOT)]
    assert not problems, "\n" + "\n".join(problems)


def test_top_level_readme_shows_result_pictures():
    local = [
        t
        for t in image_links((ROOT / "README.md").read_text(encoding="utf-8"))
        if t.startswith("docs/pictures/")
    ]
    assert len(local) >= 3, local


def test_link_problems_catches_what_it_should(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "ok.png").write_bytes(png)
    (tmp_path / "pics" / "ok.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    (tmp_path / "pics" / "big.png").write_bytes(png + b"\0" * MAX_BYTES)
    (tmp_path / "pics" / "fake.png").write_bytes(b"GIF89a" + b"\0" * 100)
    sub = tmp_path / "sub"
    sub.mkdir()
    readme = sub / "README.md"
    readme.write_text(
        "![badge](https://colab.research.google.com/assets/colab-badge.svg)\n"
        '![ok](../pics/ok.png "title") <img width=3 src="../pics/ok.jpg">\n'
        "![a](../pics/missing.png) ![b](../pics/big.png) ![c](../pics/fake.png)\n"
        "![d](/pics/ok.png) ![e](../../outside.png) [not an image](../pics/missing2.png)\n"
    )
    problems = link_problems(readme, tmp_path)
    assert len(problems) == 5, problems
    for target, reason in [
        ("missing.png", "no such file"),
        ("big.png", "bytes >"),
        ("fake.png", "not a PNG or JPEG"),
        ("/pics/ok.png", "absolute link"),
        ("outside.png", "outside the repository"),
    ]:
        assert any(target in p and reason in p for p in problems), (target, problems)
