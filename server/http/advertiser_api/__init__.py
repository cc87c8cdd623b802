"""The advertiser's API under /api/v1/advertiser (advertiser API keys): what the advertiser pages do
(campaigns, goals, creatives, conversions and their decisions, publishers and applications, balances
and top-ups), through the services those pages call."""

from server.http.advertiser_api.billing import AdvertiserBillingApi
from server.http.advertiser_api.campaigns import AdvertiserCampaignsApi
from server.http.advertiser_api.conversions import AdvertiserConversionsApi
from server.http.advertiser_api.publishers import AdvertiserPublishersApi

ADVERTISER_API = [AdvertiserCampaignsApi, AdvertiserConversionsApi, AdvertiserPublishersApi, AdvertiserBillingApi]
