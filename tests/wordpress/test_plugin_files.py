"""The WordPress plugin's files without a WordPress: PHP that parses, the zip a blogger uploads
(every file, the compiled translations, byte-equal builds), and catalogues that hold every string
the plugin shows, translated into French and Italian with the same placeholders."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from server.ads import wordpress

PLUGIN = wordpress.PLUGIN_DIR
LANGUAGES = PLUGIN / "languages"
LOCALES = ("fr_FR", "it_IT")
PHP_FILES = sorted(PLUGIN.rglob("*.php"))
SOURCE_FILES = PHP_FILES + sorted(PLUGIN.rglob("*.js"))
WP_POMO = Path("/usr/share/wordpress/wp-includes/pomo/mo.php")

# A translation call with its literal string and the plugin's text domain: __( 'Text', 'affnet' ).
_TRANSLATED = re.compile(
    r"""\b(?:__|_e|esc_html__|esc_html_e|esc_attr__|esc_attr_e)\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*'affnet'\s*\)"""
)
# Any translation call at all, to catch one the pattern above cannot read (a variable, double quotes,
# another domain, _x or _n).
_ANY_CALL = re.compile(
    r"(?<![\w>:$])(?:__|_e|_x|_ex|_n|_nx|esc_html__|esc_html_e|esc_attr__|esc_attr_e|esc_html_x|esc_attr_x)\("
)
_PLACEHOLDER = re.compile(r"%(?:\d+\$)?[sd]")


def _php() -> str:
    php = shutil.which("php")
    if php is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but the php command is missing: scripts/test-prereqs.sh installs php-cli")
        pytest.skip("php is not installed (Debian's php-cli); CI installs it")
    return php


def _catalog(name: str):
    with (LANGUAGES / name).open("rb") as fh:
        return read_po(fh)


def _plugin_files() -> dict[str, bytes]:
    return {
        f"affnet/{p.relative_to(PLUGIN).as_posix()}": p.read_bytes()
        for p in PLUGIN.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(PLUGIN).parts)
    }


@pytest.mark.parametrize("path", PHP_FILES, ids=lambda p: p.relative_to(PLUGIN).as_posix())
def test_php_file_passes_php_lint(path: Path) -> None:
    done = subprocess.run([_php(), "-l", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", PHP_FILES, ids=lambda p: p.relative_to(PLUGIN).as_posix())
def test_php_file_does_nothing_when_loaded_outside_wordpress(path: Path) -> None:
    assert "defined( 'ABSPATH' ) || exit;" in path.read_text()


def test_plugin_header_states_what_wordpress_checks() -> None:
    header = (PLUGIN / "affnet.php").read_text()[:2000]
    for line in (
        "Plugin Name:       affnet",
        "Version:           1.0.0",
        "Requires at least: 6.1",
        "Requires PHP:      7.4",
        "License:           GPL-2.0-or-later",
        "Text Domain:       affnet",
        "Domain Path:       /languages",
    ):
        assert line in header
    assert "Stable tag: 1.0.0" in (PLUGIN / "readme.txt").read_text()


def test_zip_holds_every_plugin_file_and_the_compiled_translations() -> None:
    archive = zipfile.ZipFile(io.BytesIO(wordpress.plugin_zip()))
    names = set(archive.namelist())
    for name, content in _plugin_files().items():
        assert archive.read(name) == content, name
    assert all(name.startswith("affnet/") for name in names)
    for locale, text in zip(LOCALES, ("Construire le lien", "Crea il link"), strict=True):
        mo = archive.read(f"affnet/languages/affnet-{locale}.mo")
        catalog = read_mo(io.BytesIO(mo))
        assert catalog.get("Build link").string == text
        assert catalog.get("affnet ad slot: %1$s (%2$s)").string.count("%") == 2
        # WordPress's own reader (wp-includes/pomo/mo.php) wants the hash table's offset just
        # after the translations' table, as GNU msgfmt writes it, and refuses the file otherwise.
        count, _originals, translations, _size, offset = struct.unpack_from("<5I", mo, 8)
        assert offset == translations + 8 * count


def test_wordpress_reads_the_compiled_translations(tmp_path: Path) -> None:
    php = _php()
    if not WP_POMO.exists():
        pytest.skip("Debian's wordpress package is not installed (wp-includes/pomo/mo.php)")
    archive = zipfile.ZipFile(io.BytesIO(wordpress.plugin_zip()))
    mo = tmp_path / "affnet-fr_FR.mo"
    mo.write_bytes(archive.read("affnet/languages/affnet-fr_FR.mo"))
    script = (
        f"require {str(WP_POMO)!r}; $mo = new MO();"
        f" if (!$mo->import_from_file({str(mo)!r})) {{ echo 'refused'; exit(1); }}"
        " echo $mo->translate('Tracked link:');"
    )
    done = subprocess.run([php, "-r", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == "Lien traqué :", done.stdout + done.stderr


def test_two_builds_of_the_zip_are_byte_equal() -> None:
    assert wordpress.build_zip() == wordpress.build_zip()
    assert wordpress.plugin_zip() is wordpress.plugin_zip()  # built once per process


def test_zip_leaves_out_mo_files_found_in_the_plugin_folder(tmp_path: Path) -> None:
    copy = tmp_path / "affnet"
    shutil.copytree(PLUGIN, copy)
    (copy / "languages" / "affnet-fr_FR.mo").write_bytes(b"stale")
    (copy / ".swp").write_bytes(b"editor")
    archive = zipfile.ZipFile(io.BytesIO(wordpress.build_zip(copy)))
    assert archive.read("affnet/languages/affnet-fr_FR.mo") != b"stale"
    assert "affnet/.swp" not in archive.namelist()


@pytest.mark.parametrize("locale", LOCALES)
def test_catalogue_translates_every_string_with_the_same_placeholders(locale: str) -> None:
    template = {m.id for m in _catalog("affnet.pot") if m.id}
    catalog = {m.id: m for m in _catalog(f"affnet-{locale}.po") if m.id}
    assert set(catalog) == template
    for msgid, message in catalog.items():
        assert message.string, f"{locale}: {msgid!r} is not translated"
        assert "fuzzy" not in message.flags, msgid
        assert sorted(_PLACEHOLDER.findall(message.string)) == sorted(_PLACEHOLDER.findall(msgid)), msgid


def test_template_holds_every_string_the_plugin_translates() -> None:
    template = {m.id for m in _catalog("affnet.pot") if m.id}
    for path in SOURCE_FILES:
        text = path.read_text()
        found = [re.sub(r"\\([\\'])", r"\1", m) for m in _TRANSLATED.findall(text)]
        where = path.relative_to(PLUGIN)
        assert len(found) == len(_ANY_CALL.findall(text)), f"{where}: a translation call the check cannot read"
        missing = [s for s in found if s not in template]
        assert not missing, f"{where}: not in languages/affnet.pot: {missing}"


def test_plugin_knows_the_slot_formats_and_sizes_affnet_has() -> None:
    from server.ads.service import SIZES

    render = (PLUGIN / "includes" / "render.php").read_text()
    table = render[render.index("function affnet_slot_sizes()") :]
    table = table[: table.index(");\n}")]
    php_sizes = {
        fmt: (int(w), int(h)) for fmt, w, h in re.findall(r"'([\w]+)'\s*=>\s*array\(\s*(\d+),\s*(\d+)\s*\)", table)
    }
    assert php_sizes == {fmt.value: (size.width or 0, size.height) for fmt, size in SIZES.items()}
    # The placeholder's style is affnet's own (Size.style), built the same way from width and height.
    assert "'display:block;width:' . $width . ';max-width:100%;height:' . $h . 'px;overflow:hidden'" in render
    for fmt, size in SIZES.items():
        w, h = php_sizes[fmt.value]
        assert (
            f"display:block;width:{f'{w}px' if w else '100%'};max-width:100%;height:{h}px;overflow:hidden" == size.style
        )


def test_zip_is_refused_rather_than_empty_without_the_plugin_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        wordpress.build_zip(tmp_path)
