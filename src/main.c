/* sluice: command line, signals, start-up. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "worker.h"

#define SLUICE_VERSION "0.1.0"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sluice [-c FILE] [-t] [--default-config] [-h] [-V]\n"
		"  -c, --config FILE    run with this Lua config (default: the embedded one)\n"
		"  -t, --test           check the config and exit: 0 if valid, 1 if not\n"
		"      --default-config print the embedded default config and exit\n"
		"  -h, --help           this help\n"
		"  -V, --version        print the version\n"
		"signals: SIGTERM/SIGINT stop gracefully (in-flight requests finish)\n");
}

/* More connections than the usual 1024 fds: take what the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open files limit: %s", strerror(errno));
	}
}

/* The signals are read from a signalfd by the worker loop, never in a handler. */
static int block_signals(void)
{
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"test", no_argument, NULL, 't'},
		{"default-config", no_argument, NULL, 'D'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	int test_only = 0, opt;
	while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = 1;
			break;
		case 'D':
			fputs(config_default_source, stdout);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sluice %s\n", SLUICE_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sluice: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	char err[1024];
	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (test_only) {
		printf("%s: ok\n", path ? path : "(default)");
		config_unref(cfg);
		return 0;
	}
	log_set_level((enum log_level)cfg->log_level);
	raise_fd_limit();
	int sigfd = block_signals();
	if (sigfd < 0) {
		log_error("signals: %s", strerror(errno));
		config_unref(cfg);
		return 1;
	}
	struct worker w;
	int status = 0;
	if (worker_init(&w, cfg, sigfd, err, sizeof(err)) < 0) {
		log_error("%s", err);
		status = 1;
	} else {
		log_info("sluice %s started (pid %d, config %s)", SLUICE_VERSION, (int)getpid(),
			 path ? path : "(default)");
		int rc = worker_run(&w);
		if (rc < 0) {
			log_error("event loop: %s", strerror(-rc));
			status = 1;
		} else {
			log_info("stopped");
		}
	}
	worker_destroy(&w);
	config_unref(cfg);
	close(sigfd);
	return status;
}
