return {
  listeners = {
    { address = "127.0.0.1:8443", tls = {
        certificates = { { cert = "certs/a.crt", key = "certs/a.key" }, { cert = "certs/b.pem" } },
        certificate_dir = "certs/sites",
        protocols = { "TLSv1.2", "TLSv1.3" },
        client_ca = "ca/clients.crt", verify_client = "optional",
    } },
    { address = "127.0.0.1:8080" },
  },
  pools = {
    web = { servers = { "127.0.0.1:9001" } },
    api = { servers = { "127.0.0.1:9443" },
      tls = { ca = "ca/internal.crt", name = "api.internal", cert = "c.crt", key = "c.key", verify = true } },
  },
  sites = {
    { hosts = { "admin.example.com" }, pool = "api", tls = { verify_client = "required" }, force_https = true },
    { hosts = { "www.example.com" }, pool = "web", force_https = 8443,
      routes = { { path = "/.well-known/", pool = "web", force_https = false } } },
  },
  timeouts = { tls_handshake = 5 },
}
