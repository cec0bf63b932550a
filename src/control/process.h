/*
 * The process: its worker threads and the control thread that owns
 * everything else. The control thread reads the signals, builds a new
 * generation once per reload and hands it to every worker, runs the
 * health checks for the whole process, and stops the workers.
 */
#ifndef SLUICE_PROCESS_H
#define SLUICE_PROCESS_H

#include "config/config.h"

/*
 * Runs cfg (one reference taken) on cfg->workers threads until SIGTERM or
 * SIGINT and a graceful stop. sigfd is a signalfd for SIGTERM, SIGINT and
 * SIGHUP (blocked in every thread); SIGHUP re-reads config_path (NULL: the
 * embedded default). started() runs once every worker is up. Returns the
 * exit status: 0, or 1 if it could not start.
 */
int process_run(struct config *cfg, const char *config_path, int sigfd, void (*started)(void));

#endif
