"""The WSGI entry point: ``gunicorn -c deploy/gunicorn.conf.py recsys_api.wsgi:app``."""

from recsys_api.app import get_app

app = get_app()
