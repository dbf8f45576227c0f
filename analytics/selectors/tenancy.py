"""Reads of tenancy state shared by the API's authentication and CostSim's sandbox.

The API key generation (a one-row table, migration 0005) moves in the same transaction as
every change to a key or a tenant. Whoever caches a key or a tenant keeps the generation it
read with it and compares it on use: a changed value means the cache is stale.
"""

# One primary-key read of a one-row table, about the cost of `SELECT 1`; used on its own and
# as a scalar subquery in front of other reads, so the value belongs to the same snapshot.
API_KEY_GENERATION_SQL = "SELECT value FROM analytics_apikey_generation WHERE id = 1"
