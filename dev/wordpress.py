"""A throwaway WordPress on loopback, from Debian's packages: `wordpress` (6.1), MariaDB and Apache
with mod_php, each started in a private directory on free ports, nothing system-wide touched (no
service started, nothing written under /etc or /var/lib/wordpress).

The tests of the WordPress plugin (tests/wordpress/) install it with the plugin's zip and drive it
as a blogger would; `affnet-dev wordpress` starts one to try the plugin by hand.

Debian's /usr/share/wordpress/wp-config.php reads /etc/wordpress/config-<host>.php, so the site is a
copy of /usr/share/wordpress with a wp-config.php of its own (WordPress finds ABSPATH from the
directory it runs in). When run as root, Apache serves as www-data (it refuses to serve as root),
so the site's directory is made readable and its uploads writable by that user."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from dev.services import free_port, wait_for_port

WORDPRESS = Path("/usr/share/wordpress")
BLOCK_THEME = "twentytwentythree"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
MARIADB = "/usr/sbin/mariadbd"
MARIADB_INSTALL = "/usr/bin/mariadb-install-db"
MARIADB_CLIENT = "/usr/bin/mariadb"
# What `apt-get install` needs for this (scripts/test-prereqs.sh installs it in CI).
PACKAGES = (
    "wordpress",
    f"wordpress-theme-{BLOCK_THEME}",
    "mariadb-server",
    "apache2",
    "libapache2-mod-php",
    "php-mysql",
    "php-cli",
)


def missing() -> list[str]:
    """What of Debian's WordPress, MariaDB, Apache + mod_php and PHP is not on this machine."""
    needed = {
        "wordpress": WORDPRESS / "wp-load.php",
        f"wordpress-theme-{BLOCK_THEME}": WORDPRESS / "wp-content" / "themes" / BLOCK_THEME / "theme.json",
        "mariadb-server": Path(MARIADB),
        "apache2": Path(APACHE),
        "libapache2-mod-php": _php_module() or APACHE_MODULES / "libphp.so",
    }
    gone = [name for name, path in needed.items() if not path.exists()]
    if shutil.which("php") is None:
        gone.append("php-cli")
    return gone


def _php_module() -> Path | None:
    found = sorted(APACHE_MODULES.glob("libphp*.so"))
    return found[-1] if found else None


def _php() -> str:
    return shutil.which("php") or "/usr/bin/php"


def _web_user() -> str | None:
    """The user Apache serves as: www-data when we are root (Apache will not serve as root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("www-data")
    except KeyError:
        return None
    return "www-data"


@dataclass
class WordPressSite:
    """One running site: `url` (http://127.0.0.1:PORT), its admin, and what it runs on."""

    url: str
    root: Path
    admin_user: str
    admin_password: str
    _procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def docroot(self) -> Path:
        return self.root / "wordpress"

    def php(self, code: str, timeout: float = 60, *, installing: bool = False) -> str:
        """Run PHP inside this WordPress (wp-load.php loaded, as the admin) and answer what it printed.
        `installing`: before WordPress is installed (no admin yet), as its installer runs."""
        script = self.root / f"run-{secrets.token_hex(4)}.php"
        host = self.url.split("//", 1)[1]
        script.write_text(
            "<?php\n"
            + ("define('WP_INSTALLING', true);\n" if installing else "")
            + f"$_SERVER['HTTP_HOST'] = {json.dumps(host)};\n"
            "$_SERVER['REQUEST_URI'] = '/';\n"
            f"require {json.dumps(str(self.docroot / 'wp-load.php'))};\n"
            + ("" if installing else f"wp_set_current_user(get_user_by('login', {json.dumps(self.admin_user)})->ID);\n")
            + code
            + "\n"
        )
        try:
            done = subprocess.run(  # noqa: S603
                [_php(), str(script)], capture_output=True, text=True, timeout=timeout, check=False
            )
        finally:
            script.unlink(missing_ok=True)
        if done.returncode != 0:
            raise RuntimeError(f"php failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.error_log()}")
        return done.stdout

    def install_plugin(self, zipped: bytes) -> None:
        """Unpack a plugin's zip into wp-content/plugins, as Plugins → Add New → Upload does."""
        path = self.root / "plugin.zip"
        path.write_bytes(zipped)
        with zipfile.ZipFile(path) as archive:
            archive.extractall(self.docroot / "wp-content" / "plugins")
        path.unlink()
        _readable(self.docroot / "wp-content" / "plugins")

    def activate(self, plugin: str) -> None:
        """Activate an installed plugin ("affnet/affnet.php"), as its Activate link does."""
        done = self.php(
            "require_once ABSPATH . 'wp-admin/includes/plugin.php';\n"
            f"$r = activate_plugin({json.dumps(plugin)});\n"
            "if (is_wp_error($r)) { echo $r->get_error_message(); exit(1); }\n"
            f"echo is_plugin_active({json.dumps(plugin)}) ? 'active' : 'inactive';"
        )
        if done.strip() != "active":
            raise RuntimeError(f"{plugin} did not activate: {done}")

    def set_options(self, **options: str) -> None:
        """update_option() each, as a settings page saves them (without its form's sanitising)."""
        self.php("".join(f"update_option({json.dumps(k)}, {json.dumps(v)});\n" for k, v in options.items()))

    def error_log(self) -> str:
        parts = []
        for name in ("apache-error.log", "mariadb.log", "php-error.log"):
            log = self.root / name
            if log.exists():
                parts.append(f"--- {name} ---\n" + log.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _readable(path: Path) -> None:
    """Let the web user read a tree we wrote (umask may have made it private)."""
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o755)  # noqa: S103 - a throwaway site Apache's user must read
        for name in filenames:
            path_ = os.path.join(dirpath, name)
            if not os.path.islink(path_):
                os.chmod(path_, 0o644)


def _copy_wordpress(to: Path) -> None:
    """Copy Debian's WordPress, keeping its links to Debian's shared libraries (getID3, PHPMailer,
    TinyMCE …): a relative link is made absolute, to where it points from /usr/share/wordpress."""
    shutil.copytree(WORDPRESS, to, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(to):
        for name in dirnames + filenames:
            link = Path(dirpath, name)
            if link.is_symlink() and not os.path.isabs(target := os.readlink(link)):
                original = WORDPRESS / link.parent.relative_to(to) / target
                link.unlink()
                link.symlink_to(os.path.realpath(original))


def _start_mariadb(root: Path, web_user: str | None) -> tuple[subprocess.Popen, Path]:
    data = root / "mariadb"
    data.mkdir()
    socket = root / "mariadb.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(  # noqa: S603
        [
            MARIADB_INSTALL,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *user,
        ],
        check=True,
        capture_output=True,
    )
    log = root / "mariadb.log"
    proc = subprocess.Popen(  # noqa: S603
        [
            MARIADB,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={socket}",
            f"--pid-file={root / 'mariadb.pid'}",
            "--skip-networking",
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=2",
            f"--log-error={log}",
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        ping = subprocess.run(  # noqa: S603
            [MARIADB_CLIENT, "--no-defaults", f"--socket={socket}", "-uroot", "-e", "SELECT 1"],
            capture_output=True,
            check=False,
        )
        if ping.returncode == 0:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("MariaDB did not start:\n" + (log.read_text() if log.exists() else ""))
        time.sleep(0.2)
    if web_user:
        os.chmod(socket, 0o777)  # noqa: S103 - loopback MariaDB of a throwaway site: Apache's PHP connects
    return proc, socket


def _apache_conf(root: Path, port: int, web_user: str | None) -> Path:
    modules = ["mpm_prefork", "authz_core", "dir", "mime", "rewrite", "alias", "env"]
    lines = [f"LoadModule {m}_module {APACHE_MODULES / f'mod_{m}.so'}" for m in modules]
    lines.append(f"LoadModule php_module {_php_module()}")
    docroot = root / "wordpress"
    if web_user:
        lines += [f"User {web_user}", f"Group {web_user}"]
    lines += [
        f"ServerRoot {root}",
        "ServerName 127.0.0.1",
        f"Listen 127.0.0.1:{port}",
        f"PidFile {root / 'apache.pid'}",
        f"DefaultRuntimeDir {root}",
        f"ErrorLog {root / 'apache-error.log'}",
        "LogLevel warn",
        "TypesConfig /etc/mime.types",
        "StartServers 2",
        "MinSpareServers 2",
        "MaxSpareServers 4",
        "MaxRequestWorkers 8",
        f"DocumentRoot {docroot}",
        "DirectoryIndex index.php index.html",
        f"<Directory {docroot}>",
        "  AllowOverride All",
        "  Require all granted",
        "</Directory>",
        '<FilesMatch "\\.php$">',
        "  SetHandler application/x-httpd-php",
        "</FilesMatch>",
        f"php_admin_value error_log {root / 'php-error.log'}",
        "php_admin_flag log_errors on",
        "php_admin_flag display_errors off",
    ]
    conf = root / "httpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _wp_config(root: Path, url: str, socket: Path) -> str:
    salts = "\n".join(
        f"define('{name}', '{secrets.token_hex(32)}');"
        for name in (
            "AUTH_KEY",
            "SECURE_AUTH_KEY",
            "LOGGED_IN_KEY",
            "NONCE_KEY",
            "AUTH_SALT",
            "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT",
            "NONCE_SALT",
        )
    )
    return f"""<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'wordpress');
define('DB_PASSWORD', 'wordpress');
define('DB_HOST', 'localhost:{socket}');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
{salts}
$table_prefix = 'wp_';
define('WP_HOME', '{url}');
define('WP_SITEURL', '{url}');
// 'local': application passwords work over plain HTTP on loopback (WordPress asks HTTPS otherwise).
define('WP_ENVIRONMENT_TYPE', 'local');
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('WP_ACCESSIBLE_HOSTS', '127.0.0.1,localhost');
define('FS_METHOD', 'direct');
define('WP_DEBUG', false);
if (!defined('ABSPATH')) {{
    define('ABSPATH', __DIR__ . '/');
}}
require_once ABSPATH . 'wp-settings.php';
"""


def start(*, title: str = "A blog on WordPress", locale: str = "") -> WordPressSite:
    """Start MariaDB and Apache in a new temporary directory, install WordPress with the block theme
    and answer the running site (its stop() deletes the directory). Raises RuntimeError (with the
    logs) when a part does not start."""
    gone = missing()
    if gone:
        raise RuntimeError("missing Debian packages: " + " ".join(gone))
    root = Path(tempfile.mkdtemp(prefix="affnet-wp-"))
    web_user = _web_user()
    # The web user must reach the site through every parent directory.
    for directory in [root, *root.parents]:
        if directory == Path("/"):
            break
        directory.chmod(directory.stat().st_mode | 0o011)
    root.chmod(0o755)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    site = WordPressSite(url, root, "admin", secrets.token_urlsafe(12))
    try:
        mariadb, socket = _start_mariadb(root, web_user)
        site._procs.append(mariadb)
        subprocess.run(  # noqa: S603
            [
                MARIADB_CLIENT,
                "--no-defaults",
                f"--socket={socket}",
                "-uroot",
                "-e",
                "CREATE DATABASE wordpress CHARACTER SET utf8mb4; "
                "CREATE USER 'wordpress'@'localhost' IDENTIFIED BY 'wordpress'; "
                "GRANT ALL ON wordpress.* TO 'wordpress'@'localhost';",
            ],
            check=True,
            capture_output=True,
        )
        _copy_wordpress(site.docroot)
        (site.docroot / "wp-config.php").write_text(_wp_config(root, url, socket))
        uploads = site.docroot / "wp-content" / "uploads"
        uploads.mkdir(exist_ok=True)
        _readable(site.docroot)
        if web_user:
            shutil.chown(uploads, user=web_user, group=web_user)
        apache = subprocess.Popen(  # noqa: S603
            [APACHE, "-f", str(_apache_conf(root, port, web_user)), "-DFOREGROUND"],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "apache-error.log", "ab"),  # noqa: SIM115 - Apache holds it while it runs
            start_new_session=True,
        )
        site._procs.append(apache)
        wait_for_port(port, timeout=30, proc=apache)
        _install(site, title, locale)
    except subprocess.CalledProcessError as exc:
        log = site.error_log()
        site.stop()
        raise RuntimeError(f"{exc}\n{exc.stdout}\n{exc.stderr}\n{log}") from None
    except BaseException:
        site.stop()
        raise
    return site


def _install(site: WordPressSite, title: str, locale: str) -> None:
    """WordPress's installer (wp_install), then the block theme, from PHP."""
    installed = site.php(
        "require_once ABSPATH . 'wp-admin/includes/upgrade.php';\n"
        f"$r = wp_install({json.dumps(title)}, {json.dumps(site.admin_user)}, 'admin@blog.example.test', false, '',"
        f" {json.dumps(site.admin_password)}, {json.dumps(locale)});\n"
        "if (is_wp_error($r)) { fwrite(STDERR, $r->get_error_message()); exit(1); }\n"
        f"switch_theme({json.dumps(BLOCK_THEME)});\n"
        "echo get_option('stylesheet');",
        timeout=120,
        installing=True,
    )
    if BLOCK_THEME not in installed:
        raise RuntimeError(f"WordPress did not switch to {BLOCK_THEME}:\n{installed}\n{site.error_log()}")
