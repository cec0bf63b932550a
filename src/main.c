/* sluice: command line, signals, start-up. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config/config.h"
#include "control/process.h"
#include "core/common.h"
#include "core/log.h"


static void usage(FILE *out)
{
	fprintf(out,
		"usage: sluice [-c FILE] [-t] [-s reload|stop [-p PIDFILE]] [--default-config] [-h] [-V]\n"
		"  -c, --config FILE    run with this Lua config (default: the embedded one)\n"
		"  -t, --test           check the config and exit: 0 if valid, 1 if not\n"
		"  -s, --signal SIG     tell the running sluice to reload (SIGHUP) or stop (SIGTERM);\n"
		"                       its pid is read from -p PIDFILE, else from the config's pid_file\n"
		"      --default-config print the embedded default config and exit\n"
		"  -h, --help           this help\n"
		"  -V, --version        print the version\n"
		"signals: SIGHUP reloads the config (a broken one is refused, the running one stays);\n"
		"         SIGTERM/SIGINT stop gracefully (in-flight requests finish)\n");
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

/* `sluice -s reload|stop`: signals the process whose pid is in pid_file. */
static int send_signal(const char *what, const char *pid_file)
{
	int sig = !strcmp(what, "reload") ? SIGHUP : !strcmp(what, "stop") ? SIGTERM : 0;
	if (!sig) {
		fprintf(stderr, "sluice: -s takes reload or stop, not \"%s\"\n", what);
		return 2;
	}
	if (!pid_file) {
		fprintf(stderr, "sluice: -s needs -p PIDFILE or a config with pid_file\n");
		return 1;
	}
	FILE *f = fopen(pid_file, "r");
	long pid = 0;
	if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "sluice: %s: %s\n", pid_file, f ? "no pid in it" : strerror(errno));
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	if (kill((pid_t)pid, sig) < 0) {
		fprintf(stderr, "sluice: pid %ld from %s: %s\n", pid, pid_file, strerror(errno));
		return 1;
	}
	return 0;
}

static int write_pid_file(const char *path)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, (size_t)n) != n) {
		int err = errno;
		if (fd >= 0)
			close(fd);
		return -err;
	}
	close(fd);
	return 0;
}

/*
 * The signals are read from a signalfd by the control thread's loop, never
 * in a handler; the worker threads inherit the mask.
 */
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

static const struct config *started_cfg;
static const char *started_path;
static bool pid_written;

/* Once every worker listens: the pid file says a sluice serves. */
static void started(void)
{
	int rc = started_cfg->pid_file ? write_pid_file(started_cfg->pid_file) : 0;
	if (rc < 0)
		log_warn("pid_file %s: %s", started_cfg->pid_file, strerror(-rc));
	pid_written = started_cfg->pid_file && rc == 0;
	log_info("sluice %s started (pid %d, config %s)", SLUICE_VERSION, (int)getpid(),
		 started_path ? started_path : "(default)");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"test", no_argument, NULL, 't'},
		{"signal", required_argument, NULL, 's'},
		{"pid-file", required_argument, NULL, 'p'},
		{"default-config", no_argument, NULL, 'D'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL, *signal_name = NULL, *pid_file = NULL;
	int test_only = 0, opt;
	while ((opt = getopt_long(argc, argv, "c:ts:p:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = 1;
			break;
		case 's':
			signal_name = optarg;
			break;
		case 'p':
			pid_file = optarg;
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

	char err[CONFIG_ERR_MAX];
	if (signal_name && pid_file)
		return send_signal(signal_name, pid_file);
	struct config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (signal_name) {
		int rc = send_signal(signal_name, cfg->pid_file);
		config_unref(cfg);
		return rc;
	}
	if (test_only) {
		fputs(cfg->warnings ? cfg->warnings : "", stderr);
		printf("%s: ok\n", path ? path : "(default)");
		config_unref(cfg);
		return 0;
	}
	log_set_level((enum log_level)cfg->log_level);
	config_log_warnings(cfg);
	raise_fd_limit();
	int sigfd = block_signals();
	if (sigfd < 0) {
		log_error("signals: %s", strerror(errno));
		config_unref(cfg);
		return 1;
	}
	started_cfg = cfg;
	started_path = path;
	int status = process_run(cfg, path, sigfd, started);
	if (status == 0)
		log_info("stopped");
	/* The one that was written, even if a reload named another since. */
	if (cfg->pid_file && pid_written)
		unlink(cfg->pid_file);
	config_unref(cfg);
	close(sigfd);
	return status;
}
