-- sluice configuration: a Lua script that returns one table.
-- Check it with `sluice -t -c examples/sluice.lua`; unknown keys are errors.
-- Durations are in seconds (fractions allowed), sizes in bytes.
return {
  -- workers = 4,           -- event loop threads (default: one per CPU this process may use)
  -- cpu_affinity = true,   -- worker i runs only on the i-th of those CPUs

  listeners = {
    { address = "127.0.0.1:8080", pool = "web" },
    { address = "[::1]:8080", pool = "web", max_connections = 5000 },  -- the rest wait in the backlog
    -- HTTPS (see README "HTTPS"); paths are relative to this file:
    -- { address = "[::]:8443", pool = "web", tls = {
    --     certificates = { { cert = "certs/example.com.crt", key = "certs/example.com.key" } },
    --     certificate_dir = "certs/sites/",        -- every cert + key pair in it
    --     protocols = { "TLSv1.2", "TLSv1.3" },     -- the default
    -- } },
  },

  pools = {
    web = {
      servers = { "127.0.0.1:9001", "127.0.0.1:9002" },
      -- keepalive = 64,       -- a cap on idle connections per server; without one, as many are
                               -- kept as were in use at once lately, the surplus closed gradually
      keepalive_timeout = 60,  -- an idle backend connection is closed after this
      connect_backoff = 2,     -- a failing server is taken out this long ...
      max_backoff = 30,        -- ... doubled for each outage in a row, up to this
      max_fails = 1,           -- consecutive failures (refused, reset, no answer) that take it out
      max_requests = 0,        -- requests per backend connection before it is replaced (0: no limit)
      slow_start = 0,          -- seconds over which a server back in ramps up its weight (0: off)
      max_connections = 0,     -- requests in flight to the whole pool (0: no limit); servers may
                               -- have their own: { address = "...", max_connections = 50 }
      queue = {                -- requests beyond max_connections wait here
        size = 1000,           -- more waiting: 503 at once
        timeout = 5,           -- waited longer: 503
        retry_after = 1,       -- the Retry-After of those 503s (0: none)
      },
      retry = {                -- connect failures are always retried on another server
        on = { "error", "timeout" },  -- and, for idempotent requests, these (or statuses: 503)
        tries = 3,             -- attempts per request, the first included
        buffer = 65536,        -- request body bytes kept to send again
        budget = 20,           -- retries at most this percent of requests ...
        budget_min = 10,       -- ... or this many per second
      },
    },
  },

  timeouts = {
    client_header = 10,     -- the whole request head must arrive within this (slowloris)
    client_keepalive = 75,  -- an idle keep-alive client connection is closed after this
    backend_connect = 5,
    backend_response = 60,  -- from request sent to the response head
    idle = 60,              -- no byte moved either way while a body is in flight
    shutdown = 10,          -- SIGTERM: in-flight requests get this long to finish
    tls_handshake = 10,     -- a TLS client must finish its handshake within this
  },

  limits = {
    max_request_line = 8192,   -- longer request line: 414
    max_header_size = 16384,   -- request line + headers; larger: 431
    buffer_size = 16384,       -- per direction and connection; bounds memory
    max_connections = 10000,   -- concurrent client connections
  },

  access_log = "stderr",       -- a file path, "stderr", or false
  log_level = "info",          -- error log on stderr: "debug", "info", "warn", "error"
}
