/*
 * The admin listener: a small HTTP/1.1 server on the control thread's loop,
 * apart from the proxy's listeners and workers.
 *
 *   GET /metrics      Prometheus text format                    (no token)
 *   GET /healthz      "ok": the process runs and serves          (no token)
 *   GET /             the status page, a shell without data      (no token)
 *   GET /api/status   what the status page shows, as JSON        (token)
 *   GET /api/config   what runs: listeners, pools, servers, sites (token)
 *   POST /api/server  a server's state (ready, drain, maint), weight (token)
 *   POST /api/pool    a server added to a pool, or removed       (token)
 *   POST /api/site    a site added, replaced or removed          (token)
 *
 * With admin.token_file, the /api/ calls want "Authorization: Bearer
 * <token>" (401 without it); without token_file they are refused (403).
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stddef.h>

#include "config/config.h"
#include "control/metrics.h"
#include "control/runtime.h"
#include "core/loop.h"

struct admin;

/*
 * Opens the listener of cfg (enabled) on loop, serving what src says and
 * changing what rt runs; both stay the caller's and must outlive the admin.
 * Returns NULL with a message in err.
 */
struct admin *admin_start(struct loop *loop, const struct cfg_admin *cfg,
			  const struct metrics_src *src, struct runtime *rt, char *err,
			  size_t errlen);
/*
 * A reload: takes cfg's token, and its address if that changed (the new
 * socket is bound before the old one closes; if it cannot be, nothing
 * changes). Returns 0, or -1 with a message in err.
 */
int admin_update(struct admin *a, const struct cfg_admin *cfg, char *err, size_t errlen);
/* Closes the listener and every admin connection. */
void admin_stop(struct admin *a);

#endif
