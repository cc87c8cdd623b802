"""Piccolo's configuration module (PICCOLO_CONF=server.piccolo_conf): the engine from DATABASE_URL."""

from piccolo.conf.apps import AppRegistry

from server.core.db import engine_for
from server.core.settings import load_settings

DB = engine_for(load_settings().database_url)
APP_REGISTRY = AppRegistry(apps=["server.piccolo_app"])
