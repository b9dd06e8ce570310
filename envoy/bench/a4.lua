-- Variant A4 of `cargo xtask bench`: what an operator could write in Lua instead of Rampart.
--
-- It does the same reads and the same header write as Rampart's benchmark contract
-- (envoy/bench/contract.json), but less work, which the comparison states:
--   * the config header is compared byte for byte with the tested value: no JSON
--     parsing, no canonical form (reordered keys count as drift) and no SHA-256;
--   * the tier comes from dynamic metadata (tenant.tier, set by header_to_metadata), or,
--     for variant A4h, from the tier header itself (the harness sets TIER_FROM_HEADER);
--   * the revision comes from route metadata, because Lua cannot read node metadata;
--   * the sticky bucket is the user key's last byte modulo 10 (under 3: canary), not a hash.
local TESTED_CONFIG = [[{"checkout_v2":true,"currency":"EUR","max_items":50,"locale":"de-DE","experiments":{"search_ranker":"bm25-v3","reco_model":"2026-11-a","price_display":"gross"},"limits":{"cart_ttl_s":3600,"max_coupons":3,"rate_per_min":120},"features":["one_click","apple_pay","gift_wrap","saved_carts"],"tenant_region":"eu-central-1","schema":7}]]
local TESTED_TIER = "gold"
local TESTED_REV = "r42"
local TIER_FROM_HEADER = false

function envoy_on_request(handle)
  local headers = handle:headers()
  local config = headers:get("x-user-config")
  local tier
  if TIER_FROM_HEADER then
    tier = headers:get("x-tenant-tier")
  else
    local tenant = handle:streamInfo():dynamicMetadata():get("tenant")
    tier = tenant and tenant["tier"]
  end
  local rev = handle:metadata():get("CONFIG_REV")
  local user = headers:get("x-user-id")
  local route = "stable"
  if config == TESTED_CONFIG and tier == TESTED_TIER and rev == TESTED_REV
      and user ~= nil and #user > 0 and string.byte(user, -1) % 10 < 3 then
    route = "canary"
  end
  -- Always overwrite, like Rampart: a client-sent value must not survive.
  headers:replace("x-rampart-route", route)
end
