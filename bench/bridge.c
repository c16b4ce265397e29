/* shmq-bench: the bridge cases (--cases bridge; see bridge.h).
 *
 * Same rules as the other families: every system runs in fresh processes on
 * a shared start barrier; each repetition runs every case once with every
 * system (rotating order), interleaved with the other cases of that
 * repetition; reported: median [min..max] over repetitions and shmq's ratio
 * to each peer computed per repetition (paired). One redis-server, started
 * by the bench on a free 127.0.0.1 port, serves every run; each run uses a
 * fresh stream, deleted afterwards.
 *
 * Needs hiredis at build time (else this file is a stub that says so), and
 * redis-server (PATH) and shmq-bridge at run time: $SHMQ_BRIDGE, else
 * tools/shmq-bridge in shmq-bench's build directory, else PATH. Without
 * them the family prints one "skipped:" line and the run goes on.
 */
#include "bench.h"
#include "bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_HIREDIS

#include <dirent.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define BR_MAX_CASES 8
#define BR_MAX_SYS 4
#define BR_WATCHDOG_NS (10 * 1000000000LL) /* after the window: drain and end */
#define BR_ORPHAN_NS (3 * 1000000000LL)     /* a keeper's exit after its bridge's */

#define BPEER(sym) extern const struct bridge_peer sym;
BPEER(bridge_shmq)
BPEER(bridge_xadd)
BPEER(bridge_shmq_unpacked)
#ifdef HAVE_ZMQ
BPEER(bridge_zmq)
#endif

/* Per case, the shmq row comes first (the baseline), then this order. */
const struct bridge_peer *const bridge_peers[] = {
	&bridge_shmq, &bridge_xadd, &bridge_shmq_unpacked,
#ifdef HAVE_ZMQ
	&bridge_zmq,
#endif
	NULL,
};

/* ------------------------------------------------------- environment -- */

static char skip_why[256];
static char bridge_path[PATH_MAX];
static char redis_path[PATH_MAX];

static struct {
	pid_t pid;
	int port;
	char dir[64];
	char note[160]; /* why it did not start */
	bool tried;
} redis;

/* prog in PATH (or a path with a slash) that can be executed: into out. */
static bool find_prog(const char *prog, char *out, size_t len)
{
	if (strchr(prog, '/')) {
		if (access(prog, X_OK) != 0)
			return false;
		snprintf(out, len, "%s", prog);
		return true;
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *s = path; *s;) {
		size_t l = strcspn(s, ":");
		snprintf(out, len, "%.*s/%s", (int)l, s, prog);
		if (l && access(out, X_OK) == 0)
			return true;
		s += l + (s[l] == ':');
	}
	return false;
}

/* $SHMQ_BRIDGE, else ../tools/shmq-bridge from shmq-bench's directory (the
 * build tree), else shmq-bridge in PATH. */
static bool find_bridge(void)
{
	const char *env = getenv("SHMQ_BRIDGE");
	if (env && *env)
		return find_prog(env, bridge_path, sizeof(bridge_path));
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		snprintf(bridge_path, sizeof(bridge_path), "%s/../tools/shmq-bridge", dirname(self));
		if (access(bridge_path, X_OK) == 0)
			return true;
	}
	return find_prog("shmq-bridge", bridge_path, sizeof(bridge_path));
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int port = -EADDRNOTAVAIL;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

pid_t br_spawn(char *const argv[], const char *errlog, int death_sig, char *note, size_t len)
{
	fflush(NULL);
	pid_t parent = getpid(), pid = fork();
	if (pid < 0) {
		snprintf(note, len, "fork: %s", strerror(errno));
		return -errno;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, death_sig);
		if (getppid() != parent)
			_exit(127);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		int nul = open("/dev/null", O_RDWR);
		int err = errlog ? open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		if (err >= 0)
			dup2(err, 2);
		execv(argv[0], argv);
		fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* The first line of a helper's stderr (for notes). */
static void first_line(const char *errlog, char *buf, size_t len)
{
	buf[0] = 0;
	FILE *f = errlog ? fopen(errlog, "r") : NULL;
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

/* Describe a helper's status in note (unless it already says something). */
static void status_note(const char *what, int st, const char *errlog, char *note, size_t len)
{
	char line[160];
	first_line(errlog, line, sizeof(line));
	if (note[0])
		return;
	if (WIFEXITED(st))
		snprintf(note, len, "%s exited %d%s%s", what, WEXITSTATUS(st), line[0] ? ": " : "",
			 line);
	else
		snprintf(note, len, "%s killed by signal %d%s%s", what, WTERMSIG(st),
			 line[0] ? ": " : "", line);
}

int br_exited(pid_t pid, const char *what, const char *errlog, char *note, size_t len)
{
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	if (r == 0)
		return 0;
	if (r == pid)
		status_note(what, st, errlog, note, len);
	else
		snprintf(note, len, "%s: waitpid: %s", what, strerror(errno));
	return -ECHILD;
}

int br_wait(pid_t pid, int64_t timeout_ns, const char *what, const char *errlog, char *note,
	    size_t len)
{
	int64_t deadline = bench_now() + timeout_ns;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0) {
			if (!note[0])
				snprintf(note, len, "%s: waitpid: %s", what, strerror(errno));
			return -ECHILD;
		}
		if (bench_now() > deadline) {
			/* Hung: SIGTERM (a bridge's clean exit), then SIGKILL. */
			kill(pid, SIGTERM);
			int64_t d2 = bench_now() + 2000000000LL;
			while ((r = waitpid(pid, &st, WNOHANG)) == 0 && bench_now() < d2)
				sleep_ns(5000000);
			if (r != pid) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
			}
			if (!note[0])
				snprintf(note, len, "%s hung: still running %.0f s after the end of data, "
					 "killed", what, (double)timeout_ns / 1e9);
			return -ETIMEDOUT;
		}
		sleep_ns(1000000);
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	status_note(what, st, errlog, note, len);
	return -EIO;
}

/* Run one command on the bench's redis-server; returns its reply type or -1. */
static int redis_cmd(const char *fmt, ...)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return -1;
	}
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	int type = r ? r->type : -1;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return type;
}

void br_redis_del(const char *key)
{
	redis_cmd("DEL %s", key);
}

static void redis_stop(void)
{
	if (redis.pid > 0) {
		kill(redis.pid, SIGTERM);
		int64_t d = bench_now() + 3000000000LL;
		while (waitpid(redis.pid, NULL, WNOHANG) == 0 && bench_now() < d)
			sleep_ns(5000000);
		if (waitpid(redis.pid, NULL, WNOHANG) == 0) {
			kill(redis.pid, SIGKILL);
			waitpid(redis.pid, NULL, 0);
		}
		redis.pid = 0;
	}
	if (redis.dir[0]) {
		char p[128];
		const char *files[] = { "redis.log", "bridge-out.err", "bridge-in.err", "dump.rdb" };
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", redis.dir, files[i]);
			unlink(p);
		}
		if (rmdir(redis.dir) != 0 && errno != ENOENT)
			fprintf(stderr, "shmq-bench: could not remove %s: %s\n", redis.dir,
				strerror(errno));
		redis.dir[0] = 0;
	}
}

static pid_t main_pid;

static void redis_atexit(void)
{
	if (getpid() == main_pid) /* not in a forked worker */
		redis_stop();
}

/* Start the bench's redis-server; false (redis.note says why) if it does not
 * answer PING within 5 s. */
static bool redis_start(void)
{
	if (redis.tried)
		return redis.pid > 0;
	redis.tried = true;
	main_pid = getpid();
	atexit(redis_atexit);
	prctl(PR_SET_CHILD_SUBREAPER, 1); /* see reap_orphans */
	snprintf(redis.dir, sizeof(redis.dir), "/tmp/shmq-bench-redis.XXXXXX");
	if (!mkdtemp(redis.dir)) {
		snprintf(redis.note, sizeof(redis.note), "mkdtemp: %s", strerror(errno));
		redis.dir[0] = 0;
		return false;
	}
	char log[128];
	snprintf(log, sizeof(log), "%s/redis.log", redis.dir);
	for (int attempt = 0; attempt < 3; attempt++) {
		int port = free_port();
		if (port < 0) {
			snprintf(redis.note, sizeof(redis.note), "no free port: %s", strerror(-port));
			return false;
		}
		char ports[16];
		snprintf(ports, sizeof(ports), "%d", port);
		char *argv[] = { redis_path, "--port", ports, "--bind", "127.0.0.1", "--save", "",
				 "--appendonly", "no", "--dir", redis.dir, "--logfile", log,
				 "--daemonize", "no", NULL };
		redis.pid = br_spawn(argv, NULL, SIGKILL, redis.note, sizeof(redis.note));
		if (redis.pid < 0) {
			redis.pid = 0;
			return false;
		}
		redis.port = port;
		int64_t deadline = bench_now() + 5000000000LL;
		while (bench_now() < deadline) {
			if (redis_cmd("PING") == REDIS_REPLY_STATUS)
				return true;
			int st;
			if (waitpid(redis.pid, &st, WNOHANG) == redis.pid) {
				redis.pid = 0;
				break; /* port taken meanwhile? try another */
			}
			sleep_ns(10000000);
		}
		if (redis.pid > 0) {
			kill(redis.pid, SIGKILL);
			waitpid(redis.pid, NULL, 0);
			redis.pid = 0;
		}
	}
	char line[120];
	first_line(log, line, sizeof(line));
	snprintf(redis.note, sizeof(redis.note), "redis-server did not start%s%s",
		 line[0] ? ": " : "", line);
	return false;
}

/* Processes that outlive their parents here: the bench is a child
 * subreaper (from the first run on), so the bridges' keepers (setsid,
 * double-forked: "nobody has to reap it") come back to it when their bridge
 * is gone. After every run each of them must exit by itself (bridge.c:
 * "The keeper exits by itself when its bridge finishes") within
 * BR_ORPHAN_NS; one that does not is named in the note, then ended. The
 * bench's children then: redis-server, those orphans, and what was there
 * before the run. */
static int list_children(pid_t *out, int max)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.')
			continue;
		char p[300];
		snprintf(p, sizeof(p), "/proc/self/task/%s/children", e->d_name);
		FILE *f = fopen(p, "r");
		long pid;
		while (f && n < max && fscanf(f, "%ld", &pid) == 1)
			if ((pid_t)pid != redis.pid)
				out[n++] = (pid_t)pid;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

/* before[nb]: the children there were before the run (another family's
 * daemon, say): not this run's. */
static int reap_orphans(const pid_t *before, int nb, char *note, size_t len)
{
	pid_t kids[32];
	int n = list_children(kids, 32), left = n, rc = 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < nb; j++)
			if (kids[i] == before[j]) {
				kids[i] = -1;
				left--;
				break;
			}
	int64_t deadline = bench_now() + BR_ORPHAN_NS;
	while (left > 0) {
		for (int i = 0; i < n; i++)
			if (kids[i] > 0 && waitpid(kids[i], NULL, WNOHANG) != 0) {
				kids[i] = -1; /* exited and reaped (or not ours after all) */
				left--;
			}
		if (left == 0 || bench_now() > deadline)
			break;
		sleep_ns(2000000);
	}
	for (int i = 0; i < n; i++) {
		if (kids[i] <= 0)
			continue;
		char p[64], cmd[96] = "";
		snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)kids[i]);
		FILE *f = fopen(p, "r");
		size_t l = f ? fread(cmd, 1, sizeof(cmd) - 1, f) : 0;
		if (f)
			fclose(f);
		for (size_t j = 0; j + 1 < l; j++)
			if (!cmd[j])
				cmd[j] = ' ';
		cmd[l] = 0;
		if (!note[0])
			snprintf(note, len, "still running %.0f s after the run: pid %d (%s), killed",
				 (double)BR_ORPHAN_NS / 1e9, (int)kids[i], cmd);
		kill(kids[i], SIGTERM);
		int64_t d2 = bench_now() + 1000000000LL;
		while (waitpid(kids[i], NULL, WNOHANG) == 0 && bench_now() < d2)
			sleep_ns(5000000);
		if (waitpid(kids[i], NULL, WNOHANG) == 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
		rc = -EBUSY;
	}
	return rc;
}

/* ------------------------------------------------------------ the cases -- */

struct bsample {
	bool ok;
	double value; /* msgs/s (BR_TPUT) or p50 ns (BR_LAT) */
	double p99;   /* BR_LAT */
	uint64_t ops, errors;
	double wall;
	char note[360];
};

struct bsys {
	const struct bridge_peer *p;
	struct bsample s[MAX_REPS];
	struct bench_hist hist; /* BR_LAT, merged over repetitions */
};

struct bcase {
	struct bridge_case c;
	int nsys;
	struct bsys *sys;
};

static struct bcase bcases[BR_MAX_CASES];
static int nbcases, breps;
static unsigned brun;

int bridge_ncases(void)
{
	return nbcases;
}

int bridge_total_runs(void)
{
	int n = 0;
	for (int k = 0; k < nbcases; k++)
		n += bcases[k].nsys * breps;
	return n;
}

const char *bridge_skipped(void)
{
	return skip_why[0] ? skip_why : NULL;
}

static bool selected(const struct bridge_peer *p, const char *systems)
{
	return !systems || p->flags & BRP_SHMQ || name_listed(systems, p->name);
}

static void add_case(enum br_kind kind, size_t size, double secs, uint64_t max_msgs,
		     const char *systems)
{
	if (nbcases >= BR_MAX_CASES)
		return;
	struct bcase *bc = &bcases[nbcases++];
	bc->c = (struct bridge_case){ .kind = kind, .size = size, .secs = secs,
				      .max_msgs = max_msgs,
				      .rate = kind == BR_LAT ? BR_LAT_RATE : 0 };
	bc->sys = calloc(BR_MAX_SYS, sizeof(*bc->sys));
	if (!bc->sys) {
		perror("calloc");
		exit(1);
	}
	for (int i = 0; bridge_peers[i] && bc->nsys < BR_MAX_SYS; i++)
		if (selected(bridge_peers[i], systems))
			bc->sys[bc->nsys++].p = bridge_peers[i];
}

/* Throughput at 64 B and 1 KiB for secs (default 0.3 s, quick 0.2 s), then
 * the paced latency at both sizes, 0.5 s (quick 0.25 s) at BR_LAT_RATE:
 * 1000 (500) messages timed per run. */
void bridge_build_cases(bool quick, double secs, int reps, uint64_t max_msgs,
			const char *systems)
{
	breps = reps;
	if (!find_prog("redis-server", redis_path, sizeof(redis_path))) {
		snprintf(skip_why, sizeof(skip_why), "bridge cases (redis-server not found in PATH: "
			 "apt-get install redis-server)");
		return;
	}
	if (!find_bridge()) {
		snprintf(skip_why, sizeof(skip_why), "bridge cases (shmq-bridge not found: "
			 "$SHMQ_BRIDGE, tools/shmq-bridge beside the bench, or PATH)");
		return;
	}
	double lat_secs = quick ? 0.25 : 0.5;
	if (secs > lat_secs)
		lat_secs = secs;
	size_t sizes[2] = { 64, 1024 };
	for (int i = 0; i < 2; i++)
		add_case(BR_TPUT, sizes[i], secs, max_msgs, systems);
	for (int i = 0; i < 2; i++)
		add_case(BR_LAT, sizes[i], lat_secs, max_msgs, systems);
}

void bridge_list(void)
{
	printf("bridge cases:\n");
	for (int i = 0; bridge_peers[i]; i++)
		if (!(bridge_peers[i]->flags & BRP_SHMQ))
			printf("%-18s %s\n", bridge_peers[i]->name, bridge_peers[i]->label);
#ifndef HAVE_ZMQ
	printf("%-18s skipped: libzmq not installed at build time\n", "zmq-forwarder");
#endif
}

/* ------------------------------------------------------------- running -- */

void bridge_ready(struct bridge_worker *w)
{
	bench_arrive(&w->sh->arrived, &w->sh->go);
}

struct proc_arg {
	const struct bridge_peer *p;
	void *ctx;
	struct bridge_shared *sh;
	const struct bridge_case *c;
};

static int proc_main(void *arg, int i)
{
	struct proc_arg *a = arg;
	struct bridge_worker w = { .sh = a->sh, .c = a->c, .id = i };
	int rc = a->p->worker(a->ctx, &w);
	a->sh->res[i].rc = rc;
	return rc;
}

static const char *case_name(const struct bridge_case *c)
{
	return c->kind == BR_TPUT ? "throughput" : "latency";
}

static void run_sys(struct bcase *bc, struct bsys *bs, int r)
{
	struct bsample *s = &bs->s[r];
	const struct bridge_case *c = &bc->c;
	memset(s, 0, sizeof(*s));
	if (!redis_start()) {
		snprintf(s->note, sizeof(s->note), "%s", redis.note);
		return;
	}
	struct bridge_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
					MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(s->note, sizeof(s->note), "mmap: %s", strerror(errno));
		return;
	}
	struct bridge_env env = { .host = "127.0.0.1", .port = redis.port, .bridge = bridge_path,
				  .tmpdir = redis.dir, .run = ++brun };
	void *ctx = NULL;
	char note[160] = "";
	pid_t before[32];
	int nbefore = list_children(before, 32);
	int rc = bs->p->setup(c, &env, &ctx, note, sizeof(note));
	if (rc < 0) {
		snprintf(s->note, sizeof(s->note), "setup: %s", note[0] ? note : strerror(-rc));
		munmap(sh, sizeof(*sh));
		return;
	}
	struct proc_arg arg = { bs->p, ctx, sh, c };
	struct bench_window win = { &sh->arrived, &sh->go, &sh->stop, &sh->t0, 2,
				    10 * 1000000000LL, c->secs };
	bool failed = bench_fork_window(2, proc_main, &arg, &win, BR_WATCHDOG_NS, note,
					sizeof(note));
	char tnote[160] = "", onote[160] = "";
	if (bs->p->teardown(ctx, tnote, sizeof(tnote)) < 0)
		failed = true;
	if (reap_orphans(before, nbefore, onote, sizeof(onote)) < 0)
		failed = true;
	struct bridge_wres *w = sh->res;
	/* The most telling note first: a helper's, then a worker's, then the
	 * harness's (a hang, an exit status), then a process left behind. */
	const char *why = tnote[0]  ? tnote
			  : w[0].note[0] ? w[0].note
			  : w[1].note[0] ? w[1].note
			  : note[0]	 ? note
					 : onote;
	uint64_t errors = w[1].errors;
	bool writer = c->kind == BR_TPUT && bs->p->flags & BRP_WRITER_TPUT;
	int64_t wall;
	if (writer) {
		s->ops = w[0].ops;
		wall = w[0].t_last - w[0].t_first;
		snprintf(s->note, sizeof(s->note), "%s", why);
	} else {
		s->ops = w[1].ops;
		wall = w[1].t_last - w[0].t_first;
		if (w[0].ops != w[1].ops) {
			errors++;
			snprintf(s->note, sizeof(s->note), "%s%ssent %llu, received %llu", why,
				 why[0] ? "; " : "", (unsigned long long)w[0].ops,
				 (unsigned long long)w[1].ops);
		} else {
			snprintf(s->note, sizeof(s->note), "%s", why);
		}
	}
	s->errors = errors;
	s->wall = (double)wall / 1e9;
	if (!failed && s->ops > 0 && wall > 0) {
		s->ok = true;
		if (c->kind == BR_TPUT) {
			s->value = (double)s->ops / s->wall;
		} else {
			s->value = hist_pct(&sh->hist, 0.5);
			s->p99 = hist_pct(&sh->hist, 0.99);
			hist_merge(&bs->hist, &sh->hist);
		}
	} else if (!s->note[0]) {
		snprintf(s->note, sizeof(s->note), "failed");
	}
	if (s->errors && s->ok && !s->note[0])
		snprintf(s->note, sizeof(s->note), "%llu integrity errors",
			 (unsigned long long)s->errors);
	munmap(sh, sizeof(*sh));
}

void bridge_run_rep(int r, bool tty, bool verbose, int *done, int total)
{
	for (int k = 0; k < nbcases; k++) {
		struct bcase *bc = &bcases[k];
		for (int j = 0; j < bc->nsys; j++) {
			struct bsys *bs = &bc->sys[(j + r + k) % bc->nsys];
			if (tty) {
				fprintf(stderr, "\r[rep %d/%d] %3d%% %-16s %-22s %zu   ", r + 1, breps,
					100 * *done / (total ? total : 1), bs->p->name,
					case_name(&bc->c), bc->c.size);
				fflush(stderr);
			}
			int64_t t = bench_now();
			run_sys(bc, bs, r);
			if (verbose)
				fprintf(stderr, "bridge %s %zu B %s: ok=%d %g p99 %g n=%llu (%.2f s) %s\n",
					case_name(&bc->c), bc->c.size, bs->p->name, bs->s[r].ok,
					bs->s[r].value, bs->s[r].p99,
					(unsigned long long)bs->s[r].ops,
					(double)(bench_now() - t) / 1e9, bs->s[r].note);
			(*done)++;
		}
	}
	if (r == breps - 1)
		redis_stop();
}

/* ------------------------------------------------------------- numbers -- */

enum fig { FIG_VALUE, FIG_P99, FIG_OPS };

static double fig(const struct bsample *s, enum fig f)
{
	return f == FIG_P99 ? s->p99 : f == FIG_OPS ? (double)s->ops : s->value;
}

static struct stat3 sys_stat(const struct bsys *bs, enum fig f)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; r < breps; r++)
		if (bs->s[r].ok)
			v[n++] = fig(&bs->s[r], f);
	return stats(v, n);
}

/* Per repetition a / b of a figure, where both ran. */
static struct stat3 paired(const struct bsys *a, const struct bsys *b, enum fig f)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; a && b && r < breps; r++)
		if (a->s[r].ok && b->s[r].ok && fig(&b->s[r], f) > 0)
			v[n++] = fig(&a->s[r], f) / fig(&b->s[r], f);
	return stats(v, n);
}

static struct bsys *base_of(struct bcase *bc)
{
	for (int i = 0; bc && i < bc->nsys; i++)
		if (bc->sys[i].p->flags & BRP_SHMQ)
			return &bc->sys[i];
	return NULL;
}

static struct bsys *find_sys(struct bcase *bc, const char *name)
{
	for (int i = 0; bc && i < bc->nsys; i++)
		if (strcmp(bc->sys[i].p->name, name) == 0)
			return &bc->sys[i];
	return NULL;
}

static struct bcase *find_case(enum br_kind kind, size_t size)
{
	for (int k = 0; k < nbcases; k++)
		if (bcases[k].c.kind == kind && bcases[k].c.size == size)
			return &bcases[k];
	return NULL;
}

static const char *first_note(const struct bsys *bs)
{
	for (int r = 0; r < breps; r++)
		if (bs->s[r].note[0])
			return bs->s[r].note;
	return NULL;
}

/* -------------------------------------------------------------- report -- */

static void title(const struct bridge_case *c, char *buf, size_t len)
{
	char sz[32];
	if (c->size >= 1024 && c->size % 1024 == 0)
		snprintf(sz, sizeof(sz), "%zu KiB", c->size / 1024);
	else
		snprintf(sz, sizeof(sz), "%zu B", c->size);
	if (c->kind == BR_TPUT)
		snprintf(buf, len, "Bridge: throughput end to end, %s messages, 1 producer flat out "
				   "-> 1 consumer (xadd-pipelined: the writer alone)", sz);
	else
		snprintf(buf, len, "Bridge: one-way latency end to end, %s messages, paced at %.0f "
				   "msgs/s (not flat out)", sz, c->rate);
}

static bool models_said(const struct bcase *bc, const struct bridge_peer *p, const char *m)
{
	for (const struct bcase *e = bcases; e < bc; e++)
		for (int i = 0; i < e->nsys; i++)
			if (e->sys[i].p == p && p->models(&e->c) && strcmp(p->models(&e->c), m) == 0)
				return true;
	return false;
}

static void print_case(struct bcase *bc)
{
	const struct bridge_case *c = &bc->c;
	bool lat = c->kind == BR_LAT;
	char t[240];
	title(c, t, sizeof(t));
	printf("\n### %s\n", t);
	struct bsys *base = base_of(bc);
	if (lat)
		printf("%-24s %-30s %-22s %-30s %-10s %s\n", "system", "p50 median [min..max]",
		       "shmq/this (p50)", "p99 median [min..max]", "p99 all", "msgs timed");
	else
		printf("%-24s %-30s %-22s %-8s %s\n", "system", "msgs/s median [min..max]",
		       "shmq/this", "MB/s", "msgs per run");
	for (int i = 0; i < bc->nsys; i++) {
		struct bsys *bs = &bc->sys[i];
		struct stat3 st = sys_stat(bs, FIG_VALUE);
		const char *note = first_note(bs);
		if (!st.n) {
			printf("%-24s failed%s%s\n", bs->p->label, note ? ": " : "", note ? note : "");
			continue;
		}
		char range[128], ratio[64], ops[32];
		stat_range_str(&st, lat, range, sizeof(range));
		struct stat3 ra = paired(base, bs, FIG_VALUE);
		stat_ratio_str(&ra, ratio, sizeof(ratio));
		if (lat) {
			char r99[128], a[24];
			struct stat3 s99 = sys_stat(bs, FIG_P99);
			stat_range_str(&s99, true, r99, sizeof(r99));
			printf("%-24s %-30s %-22s %-30s %-10s %llu", bs->p->label, range, ratio, r99,
			       human_ns(hist_pct(&bs->hist, 0.99), a, sizeof(a)),
			       (unsigned long long)bs->hist.n);
		} else {
			double mbs = st.med * (double)c->size / 1e6;
			printf("%-24s %-30s %-22s %-8.*f %s", bs->p->label, range, ratio,
			       mbs >= 100 ? 0 : mbs >= 10 ? 1 : 2, mbs,
			       human(sys_stat(bs, FIG_OPS).med, ops, sizeof(ops)));
		}
		if (st.n < breps)
			printf("  (%d/%d reps ok%s%s)", st.n, breps, note ? ": " : "", note ? note : "");
		else if (note)
			printf("  (%s)", note);
		printf("\n");
	}
	for (int i = 0; i < bc->nsys; i++) {
		const char *m = bc->sys[i].p->models ? bc->sys[i].p->models(c) : NULL;
		if (m && !models_said(bc, bc->sys[i].p, m))
			printf("- %s: %s\n", bc->sys[i].p->label, m);
	}
	if (lat)
		printf("(every message timed from its send stamp to its receipt; the figure: each "
		       "repetition's p50; p99 all: every message of every repetition; shmq/this "
		       "below 1 favours shmq)\n");
	else
		printf("(msgs/s = messages / (last receipt - first send); shmq/this: per-repetition "
		       "ratios, then median [min..max]; above 1 favours shmq)\n");
}

void bridge_print(void)
{
	if (skip_why[0]) {
		printf("\n## Bridge (shmq-bridge over Redis)\nskipped: %s\n", skip_why);
		return;
	}
	if (!nbcases)
		return;
	printf("\n## Bridge: local queue -> shmq-bridge out -> Redis stream -> shmq-bridge in -> "
	       "local queue (%d repetitions, interleaved: every system once per case per "
	       "repetition, rotating order; redis-server %s on 127.0.0.1, --save '' "
	       "--appendonly no)\n", breps, redis_path);
#ifndef HAVE_ZMQ
	printf("skipped: zmq-forwarder (libzmq not installed)\n");
#endif
	for (int k = 0; k < nbcases; k++)
		print_case(&bcases[k]);
}

/* ------------------------------------------------------------- targets -- */

void bridge_targets(void)
{
	if (!nbcases)
		return;
	size_t sizes[2] = { 64, 1024 };
	for (int i = 0; i < 2; i++) {
		struct target *t = new_target("bridge %s end to end >= 0.7x pipelined XADD",
					      sizes[i] == 64 ? "64 B" : "1 KiB");
		struct bcase *bc = find_case(BR_TPUT, sizes[i]);
		struct bsys *base = base_of(bc), *x = find_sys(bc, "xadd-pipelined");
		struct stat3 s = paired(base, x, FIG_VALUE);
		if (s.n) {
			t->have = true;
			t->met = s.med >= 0.7;
			snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f]", s.med, s.min, s.max);
		} else if (base && x && !sys_stat(base, FIG_VALUE).n) {
			t->have = true; /* the bridge ran and failed every time: missed */
			snprintf(t->meas, sizeof(t->meas), "shmq bridge failed in every repetition");
		}
	}
}

/* ---------------------------------------------------------------- json -- */

static void json_stat(FILE *f, const char *key, struct stat3 s)
{
	fprintf(f, "\"%s\":{\"median\":%g,\"min\":%g,\"max\":%g}", key, s.med, s.min, s.max);
}

void bridge_json(FILE *f, bool first)
{
	for (int k = 0; k < nbcases; k++) {
		struct bcase *bc = &bcases[k];
		const struct bridge_case *c = &bc->c;
		bool lat = c->kind == BR_LAT;
		struct bsys *base = base_of(bc);
		fprintf(f, "%s\n{\"kind\":\"bridge\",\"case\":\"%s\",\"size\":%zu,\"secs\":%g,"
			   "\"rate\":%g,\"metric\":\"%s\",\"better\":\"%s\",\"systems\":[",
			first && k == 0 ? "" : ",", case_name(c), c->size, c->secs, c->rate,
			lat ? "latency_p50_ns" : "msgs_per_s", lat ? "lower" : "higher");
		for (int i = 0; i < bc->nsys; i++) {
			struct bsys *bs = &bc->sys[i];
			struct stat3 st = sys_stat(bs, FIG_VALUE);
			fprintf(f, "%s\n {\"name\":", i ? "," : "");
			json_str(f, bs->p->name);
			fprintf(f, ",\"label\":");
			json_str(f, bs->p->label);
			const char *m = bs->p->models ? bs->p->models(c) : NULL;
			if (m) {
				fprintf(f, ",\"models\":");
				json_str(f, m);
			}
			fprintf(f, ",\"median\":%g,\"min\":%g,\"max\":%g,", st.med, st.min, st.max);
			json_stat(f, "shmq_over_this", paired(base, bs, FIG_VALUE));
			fputc(',', f);
			if (lat) {
				json_stat(f, "p99_ns", sys_stat(bs, FIG_P99));
				fprintf(f, ",\"merged\":{\"n\":%llu,\"p50\":%g,\"p99\":%g,\"p999\":%g,"
					   "\"max\":%llu},",
					(unsigned long long)bs->hist.n, hist_pct(&bs->hist, 0.5),
					hist_pct(&bs->hist, 0.99), hist_pct(&bs->hist, 0.999),
					(unsigned long long)bs->hist.max);
			}
			fprintf(f, "\"samples\":[");
			for (int r = 0; r < breps; r++) {
				struct bsample *s = &bs->s[r];
				fprintf(f, "%s{\"ok\":%s,\"msgs\":%llu,\"errors\":%llu,\"wall_s\":%g,"
					   "\"value\":%g,\"p99_ns\":%g,\"note\":",
					r ? "," : "", s->ok ? "true" : "false",
					(unsigned long long)s->ops, (unsigned long long)s->errors, s->wall,
					s->value, s->p99);
				json_str(f, s->note);
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fprintf(f, "]}");
	}
}

#else /* !HAVE_HIREDIS: the family compiles out */

const struct bridge_peer *const bridge_peers[] = { NULL };
static bool asked;

void bridge_build_cases(bool quick, double secs, int reps, uint64_t max_msgs,
			const char *systems)
{
	(void)quick, (void)secs, (void)reps, (void)max_msgs, (void)systems;
	asked = true;
}

int bridge_ncases(void)
{
	return 0;
}

int bridge_total_runs(void)
{
	return 0;
}

const char *bridge_skipped(void)
{
	return asked ? "bridge cases (hiredis not installed at build time: libhiredis-dev)" : NULL;
}

void bridge_run_rep(int r, bool tty, bool verbose, int *done, int total)
{
	(void)r, (void)tty, (void)verbose, (void)done, (void)total;
}

void bridge_print(void)
{
	if (asked)
		printf("\n## Bridge (shmq-bridge over Redis)\nskipped: %s\n", bridge_skipped());
}

void bridge_targets(void)
{
}

void bridge_json(FILE *f, bool first)
{
	(void)f, (void)first;
}

void bridge_list(void)
{
	printf("bridge cases:\n%-18s skipped: hiredis not installed at build time\n",
	       "xadd-pipelined");
}

void bridge_ready(struct bridge_worker *w)
{
	(void)w;
}

#endif
