"""Entry point for ``celery -A portal.worker worker`` and ``celery -A portal.worker beat``."""

from portal.app import create_app

celery = create_app().extensions["celery"]
