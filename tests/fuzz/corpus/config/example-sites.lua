-- Several sites on one listener, with routes, balancing and a Lua hook.
-- Check it with `sluice -t -c examples/sites.lua`.
return {
  listeners = {
    { address = "127.0.0.1:8080" },  -- no pool: requests go by sites
  },

  pools = {
    web = { servers = { "127.0.0.1:9001", "127.0.0.1:9002" } },
    api = {
      balance = "least_conn",
      servers = {
        { address = "127.0.0.1:9001", weight = 2 },
        "127.0.0.1:9002",
        { address = "127.0.0.1:9003", backup = true },
      },
    },
    sticky = { balance = "hash", hash = "cookie:session", servers = { "127.0.0.1:9001", "127.0.0.1:9002" } },
  },

  sites = {
    { hosts = { "example.com", "www.example.com" },
      routes = {
        { path = "/", pool = "web", response_headers = { set = { ["X-Frame-Options"] = "DENY" } } },
        { path = "/api/", pool = "api", request_headers = { set = { ["X-Api"] = "1" } } },
        { path = "/cart/", pool = "sticky" },
        { path = "/health", respond = { status = 200, body = "ok\n", headers = { ["Content-Type"] = "text/plain" } } },
        { path = "/old/", redirect = { to = "https://example.com/new", status = 301, keep_path = true } },
      } },
    { hosts = { "*.example.com" }, pool = "web" },
    { default = true, routes = { { path = "/", respond = { status = 404, body = "no such site\n" } } } },
  },

  hook = function(r)
    if r.header("x-canary") == "1" then
      return { pool = "api", set_headers = { ["X-Canary"] = "1" } }
    end
  end,

  pid_file = "/tmp/sluice.pid",
  access_log = "stderr",
}
