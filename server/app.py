"""create_app(settings) -> Litestar: routes of every domain, middleware, templates, lifecycle."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
from pathlib import Path

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from redis.asyncio import Redis

from server import piccolo_app
from server.ads import inventory as ad_inventory
from server.ads import service as ads_service
from server.ads.process import AdServer
from server.conversions import rules, selfcheck
from server.conversions import service as conversion_intake
from server.conversions.group_commit import ConversionWriter
from server.core import changes, db, i18n, jobs, money
from server.core.errors import DomainError
from server.core.locale import LocaleMiddleware
from server.core.settings import ROOT, Settings, load_settings
from server.earnings import spend
from server.http import transport
from server.http.accounts.api import AccountsApi
from server.http.accounts.notifications import NotificationSettings, unsubscribe_now, unsubscribe_page
from server.http.accounts.pages import AccountController, AdminPublishersController, AuthController
from server.http.ads.pages import PublisherSlots, demo_blog, wordpress_plugin
from server.http.ads.public import AdFastPath, ads_endpoints
from server.http.advertiser_api import ADVERTISER_API
from server.http.amounts import amount_preview
from server.http.apikit import ApiKeyPolicyMiddleware
from server.http.audit.pages import audit_log, mail_log, retry_mail
from server.http.billing.pages import AdvertiserBilling, FinanceStripeEvents, stripe_connect_webhook, stripe_webhook
from server.http.campaigns.marketplace_pages import PublisherCampaigns, PublisherLinks
from server.http.campaigns.pages import AdvertiserCampaigns
from server.http.conversions.api import ConversionsApi
from server.http.conversions.flag_pages import AdvertiserReviewQueue, CampaignRules, FinanceReviewQueue, NetworkRules
from server.http.conversions.public import PostbackFastPath, conversion_pixel, postback
from server.http.conversions.review_api import ConversionReviewApi, PublisherReviewApi
from server.http.conversions.review_pages import AdvertiserConversions
from server.http.csrf import SessionBoundCSRF
from server.http.health import healthz
from server.http.invoicing.documents import DOCUMENT_ROUTES
from server.http.invoicing.profile import PROFILE_ROUTES
from server.http.openapi import document_errors, document_idempotency
from server.http.pages import SESSION_COOKIE
from server.http.payouts.connect_pages import PublisherPayoutAccount
from server.http.payouts.pages import FinancePayouts
from server.http.payouts.settings_pages import FinancePayoutSettings
from server.http.publisher_api.controllers import PublisherApi
from server.http.reports.finance_pages import FinanceReports, FinanceReportsApi
from server.http.reports.pages import (
    AdminDashboard,
    AdvertiserDashboard,
    AdvertiserReports,
    AdvertiserReportsApi,
    PublisherDashboard,
)
from server.http.tracking.public import ClickFastPath, ClickParts, click_now, click_redirect
from server.http.web import (
    PUBLIC,
    SERVER_FAILED,
    AuthMiddleware,
    FastPaths,
    SecurityHeadersMiddleware,
    allow_every_method,
    check_address,
    error_response,
    handle_domain_error,
    handle_http_error,
)
from server.http.webhooks.pages import PublisherPostbacks, WebhookPages
from server.invoicing import identity as invoicing_identity
from server.mail import outbox as mail_outbox
from server.reports import traffic
from server.tracking import cache, click_rules, counting, geo
from server.tracking import service as tracking
from server.tracking.buffer import EventBuffer
from server.tracking.counting import ClickCounter
from server.tracking.journal import Journal
from server.tracking.writer_process import ProcessWriter
from server.webhooks import delivery as webhook_delivery

log = logging.getLogger("affnet")

ROUTE_HANDLERS = [
    AuthController,
    AccountController,
    NotificationSettings,
    WebhookPages,
    PublisherPostbacks,
    unsubscribe_page,
    unsubscribe_now,
    AdminPublishersController,
    PublisherDashboard,
    AdvertiserDashboard,
    AdvertiserReports,
    AdvertiserReportsApi,
    FinanceReports,
    FinanceReportsApi,
    FinancePayouts,
    FinancePayoutSettings,
    FinanceStripeEvents,
    AdminDashboard,
    audit_log,
    mail_log,
    retry_mail,
    healthz,
    AccountsApi,
    click_redirect,
    AdvertiserCampaigns,
    PublisherCampaigns,
    PublisherLinks,
    postback,
    conversion_pixel,
    ConversionsApi,
    ConversionReviewApi,
    PublisherReviewApi,
    AdvertiserConversions,
    AdvertiserReviewQueue,
    FinanceReviewQueue,
    CampaignRules,
    NetworkRules,
    AdvertiserBilling,
    *ADVERTISER_API,
    amount_preview,
    stripe_webhook,
    stripe_connect_webhook,
    PublisherPayoutAccount,
    PublisherApi,
    ads_endpoints,
    PublisherSlots,
    demo_blog,
    wordpress_plugin,
    *PROFILE_ROUTES,
    *DOCUMENT_ROUTES,
]


def _derived_secret(settings: Settings, purpose: str) -> str:
    return hmac.new(settings.secret_key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _check_autoescape(engine: JinjaTemplateEngine) -> None:
    # Every template is autoescaped; refuse to start if that ever stops being true.
    assert engine.engine.autoescape is True, "Jinja autoescape must be on"
    engine.engine.globals["app_name"] = "affnet"
    engine.engine.globals["money"] = money  # money.display writes in the reader's locale
    i18n.install(engine.engine)


def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "internal_error", str(SERVER_FAILED))


def _click_writer_process(settings: Settings, counter: ClickCounter) -> ProcessWriter:
    """The click writer process (settings.click_writer = "process"): it counts as `counter` would,
    and its news of full campaigns reaches `counter` with each answer."""
    config = {
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "rate": counter.rate,
        "window_ms": counter.window_ms,
        "dedup_seconds": counter.dedup_seconds,
        "near_seconds": counter.near_seconds,
        "process": counter.process,  # the tally of classified clicks names the serving process
    }
    return ProcessWriter(config, on_news=counter.heard)


def create_app(settings: Settings | None = None) -> FastPaths:
    settings = settings or load_settings()
    Path(settings.media_dir).mkdir(parents=True, exist_ok=True)
    engine = db.engine_for(settings.database_url)
    redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    link_cache = cache.LinkCache(tracking.load_target)
    terms_cache = cache.LinkCache(conversion_intake.load_terms)  # what postbacks need, by link id
    conversion_writer = ConversionWriter()  # concurrent reports' rows, committed a batch at a time
    # Duplicates, network rates, caps and budgets are counted in Redis for every process at once,
    # one call per flushed batch of clicks (server/tracking/counting.py).
    click_counter = tracking.click_counter(redis, traffic.valid_clicks_ever)
    redirector = tracking.Redirector(
        token_key=_derived_secret(settings, "click-token").encode(),
        visitor_key=_derived_secret(settings, "visitor").encode(),
        counter=click_counter,
    )
    redirector.country_header = geo.header_name(settings.geo_country_header)
    redirector.quality_checks = settings.click_quality_checks
    redirector.visitor_cookie = settings.visitor_cookie
    # Every answered click and counted view is journaled locally before its answer leaves, and
    # replayed at the next start if this process dies before storing it (server/tracking/journal.py).
    click_buffer = EventBuffer(
        writer=redirector.store,
        flush_interval=0.5,
        max_batch=5000,
        journal=Journal.of(settings.journal_dir, "clicks", settings.database_url),
        max_rows=settings.click_buffer_max_rows,
        remote=_click_writer_process(settings, click_counter) if settings.click_writer == "process" else None,
    )
    ads = AdServer(
        base_url=settings.base_url,
        redis=redis,
        offer_key=_derived_secret(settings, "ad-offer").encode(),
        visitor_key=_derived_secret(settings, "visitor").encode(),
        writer=ads_service.write_impressions,
        journal=Journal.of(settings.journal_dir, "impressions", settings.database_url),
        spend=spend,
    )
    ads.country_header = redirector.country_header
    ads.views.quality_checks = settings.click_quality_checks  # a data centre's views are not billed either
    tasks: list[asyncio.Task] = []

    async def on_startup(app: Litestar) -> None:
        piccolo_app.bind(engine)
        mail_outbox.configure(settings)
        webhook_delivery.configure(settings)
        invoicing_identity.configure(settings)  # an invalid network VAT number stops production here
        await db.start(engine)
        await click_buffer.start()
        changes.register(click_rules.NETWORK, redis)  # first: links reloaded after a clear read the new value
        changes.register(link_cache, redis)
        changes.register(terms_cache, redis)
        changes.register(click_counter, redis)
        await ads.start()
        ad_inventory.register(ads.inventory, redis)
        # Its own client: a subscribed connection cannot serve other commands (each listener takes
        # one connection from this client's pool).
        listener_redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        app.state.listener_redis = listener_redis
        for listening in (
            changes.listen(listener_redis, click_rules.NETWORK, link_cache, terms_cache, click_counter, ads.inventory),
            counting.listen(listener_redis, click_counter),
            ad_inventory.listen(listener_redis, ads.inventory),
        ):
            tasks.append(asyncio.create_task(listening))
        # Clicks whose link is in memory are answered by the server's protocol, no task started
        # (server/http/transport.py), when the server is `affnet serve`'s uvicorn.
        transport.answer_instantly(b"/c/", functools.partial(click_now, ClickParts.of(app.state)))

    async def on_shutdown(app: Litestar) -> None:
        transport.answer_instantly(b"/c/", None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await click_buffer.stop()  # every buffered click is stored before the process exits
        await conversion_writer.close()
        await ads.stop()  # and every counted impression
        ad_inventory.unregister(ads.inventory)
        changes.unregister(click_rules.NETWORK)
        changes.unregister(link_cache)
        changes.unregister(terms_cache)
        changes.unregister(click_counter)
        await db.stop(engine)
        await jobs.stop()  # jobs still waiting for Redis are left to the worker's sweeps
        await redis.aclose()
        await app.state.listener_redis.aclose()

    app = Litestar(
        route_handlers=[
            *ROUTE_HANDLERS,
            create_static_files_router(
                path="/static", directories=[ROOT / "static"], opt=PUBLIC, include_in_schema=False
            ),
            # Creative images advertisers uploaded (validated as images when stored).
            create_static_files_router(
                path="/media", directories=[settings.media_dir], opt=PUBLIC, include_in_schema=False, name="media"
            ),
        ],
        state=State(
            {
                "settings": settings,
                "redis": redis,
                "link_cache": link_cache,
                "terms_cache": terms_cache,
                "conversion_writer": conversion_writer,
                "conversion_rules": rules.RuleState(),  # the fraud rules' knobs and baselines, kept briefly
                "sightings": selfcheck.Sightings(),  # publishers' own visitor hashes written today (self_conversion)
                "redirector": redirector,
                "click_buffer": click_buffer,
                "ads": ads,
            }
        ),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        middleware=[
            SecurityHeadersMiddleware(),
            AuthMiddleware(),
            LocaleMiddleware(),
            ApiKeyPolicyMiddleware(),
            SessionBoundCSRF(
                secret=_derived_secret(settings, "csrf"),
                session_cookie=SESSION_COOKIE,
                cookie_name="affnet_csrf",
                header_name="x-csrf-token",
                secure=settings.secure_cookies,
                # The API authenticates with Bearer keys only, never cookies, so it needs no CSRF token.
                # The click redirect changes nothing a visitor owns and must not mint a token per click.
                # Conversion postbacks and pixels come from advertisers' servers and pages, with their
                # own credentials (a campaign token or API key; the pixel a signed click id).
                # Stripe's webhooks are signed by Stripe (verified over the raw body), and send no cookie.
                # Ads' endpoints are called by the embed script from publishers' pages and read no cookie.
                # A mail client's one-click unsubscribe (RFC 8058) POSTs with no cookie and no token: the
                # signed token in the URL is the authority, and it can only turn one notice off.
                exclude=(
                    "^/api/",
                    "^/healthz$",
                    "^/c/",
                    "^/postback",
                    "^/px/",
                    "^/stripe/(connect-)?webhook$",
                    "^/ads/",
                    "^/unsubscribe/",
                ),
            ),
        ],
        template_config=TemplateConfig(
            directory=ROOT / "templates", engine=JinjaTemplateEngine, engine_callback=_check_autoescape
        ),
        openapi_config=OpenAPIConfig(
            title="affnet API",
            version="1",
            path="/schema",
            description="Publishers and advertisers call /api/v1 with 'Authorization: Bearer <API key>'. "
            "Create keys on the API keys page of your account.",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", description="An affnet API key")
                }
            ),
        ),
        exception_handlers={
            DomainError: handle_domain_error,
            HTTPException: handle_http_error,
            Exception: _handle_unexpected,
        },
        before_request=check_address,
        debug=False,
    )
    document_errors(app)
    document_idempotency(app)
    allow_every_method(app)
    return FastPaths(app, ClickFastPath(), AdFastPath(), PostbackFastPath())
