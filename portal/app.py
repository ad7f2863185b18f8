"""The application factory: it only wires things. It never migrates, exits or calls out."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import portal.models  # noqa: F401  (every table is mapped before the database is touched)
from portal import (
    billing,
    cli,
    context,
    errors,
    i18n,
    notifying,
    payment_channels,
    security,
    templating,
    urls,
)
from portal.celery_app import celery_init_app
from portal.extensions import babel, csrf, db, limiter, login_manager, migrate
from portal.kernel.clock import Clock, SystemClock
from portal.kernel.db import ping_when_idle, use_real_sqlite_transactions
from portal.settings import INSTANCE, ROOT, Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Flask:
    settings = settings or Settings()
    app = Flask(
        "portal",
        root_path=str(ROOT / "portal"),
        instance_path=str(INSTANCE),
        template_folder=str(ROOT / "templates"),
        static_folder="static",
    )
    app.extensions[context.SETTINGS_KEY] = settings
    app.extensions[context.CLOCK_KEY] = clock or SystemClock()

    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value()
    else:  # development only (production refuses this in Settings): sessions last one process
        log.warning("DIANFEI_SECRET_KEY is not set; using a random key for this process")
        secret = secrets.token_hex(32)
    app.config.update(
        SECRET_KEY=secret,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes),
        MAX_CONTENT_LENGTH=10 * 1024 * 1024,
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage_url,
        RATELIMIT_HEADERS_ENABLED=True,
        BABEL_DEFAULT_LOCALE=settings.default_locale,
        BABEL_DEFAULT_TIMEZONE=settings.timezone,
        BABEL_TRANSLATION_DIRECTORIES=str(ROOT / "portal" / "translations"),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    if settings.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops,  # type: ignore[method-assign]
                                x_proto=settings.trusted_proxy_hops)

    db.init_app(app)
    with app.app_context():
        use_real_sqlite_transactions(db.engine)
        ping_when_idle(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "portal" / "migrations"),
                     render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale)
    limiter.init_app(app)
    i18n.init_app(app)
    templating.init_app(app)
    errors.init_app(app)
    urls.init_app(app)
    security.init_app(app)
    celery_init_app(app)
    billing.init_app(app)
    notifying.init_app(app)
    cli.init_app(app)
    payment_channels.init_app(app, settings, app.extensions[context.CLOCK_KEY])

    from portal.backoffice import (  # noqa: F401  (their routes are on backoffice_bp)
        audit_views,
        dispute_views,
        inbox_views,
        kpi_views,
        plan_views,
        reading_views,
        reconcile_views,
        refund_views,
        review_views,
    )
    from portal.backoffice.views import bp as backoffice_bp
    from portal.web import disputes, notification_prefs, readings  # noqa: F401  (on web_bp)
    from portal.web.payments import bp as pay_bp
    from portal.web.plans import bp as plans_bp
    from portal.web.views import bp as web_bp
    from portal.webhooks.views import bp as webhooks_bp
    app.register_blueprint(web_bp)
    app.register_blueprint(backoffice_bp)
    app.register_blueprint(pay_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(plans_bp)
    from portal.miniprogram import api as miniprogram_api
    from portal.miniprogram.web import bp as wechat_bind_bp
    miniprogram_api.init_app(app)
    app.register_blueprint(wechat_bind_bp)
    return app
