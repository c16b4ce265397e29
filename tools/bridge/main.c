/* shmq-bridge: arguments, start (the window adopted, the keeper started), and
 * what the programs share. */
#include "bridge.h"

volatile sig_atomic_t stop_requested;
const char *prog = "shmq-bridge";

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR && !stop_requested)
		;
}

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* ------------------------------------------------------------- arguments -- */

static int usage(void)
{
	fprintf(stderr,
		"usage: shmq-bridge out NAME redis://HOST[:PORT]/STREAM [--batch N] [--maxlen N]\n"
		"       shmq-bridge in redis://HOST[:PORT]/STREAM NAME --group G [--producers N]\n"
		"                      [--dedup] [--batch N] [--claim-idle MS] [--join-with QUEUE]...\n"
		"Carries a local shmq queue over a Redis stream (see `man shmq`, BRIDGE).\n");
	return EX_USAGE;
}

static int help(void)
{
	printf("usage: shmq bridge out NAME redis://HOST[:PORT]/STREAM [--batch N] [--maxlen N]\n"
	       "       shmq bridge in redis://HOST[:PORT]/STREAM NAME --group G [--producers N]\n"
	       "                      [--dedup] [--batch N] [--claim-idle MS] [--join-with QUEUE]...\n"
	       "\n"
	       "out: consumes the local queue NAME and appends its messages to the Redis stream,\n"
	       "     --batch N (default %u) per entry; writes an end marker and exits 0 when every\n"
	       "     local producer is gone. --maxlen N: waits while the stream holds N entries.\n"
	       "in:  reads the stream in consumer group G and puts the messages into NAME,\n"
	       "     acknowledging each entry once it is there. --producers N: after the end\n"
	       "     markers of N out bridges, ends the local data and exits 0. --dedup: drops\n"
	       "     entries replayed after a crash. --claim-idle MS (default 60000): takes over\n"
	       "     the entries of a dead bridge of the group. --join-with QUEUE: for a\n"
	       "     JoinableQueue NAME, reports completion to the origin only once QUEUE is\n"
	       "     joined too.\n"
	       "\n"
	       "Each bridge keeps a keeper process holding its local role and the messages in\n"
	       "flight; killed, a bridge restarted with the same arguments loses nothing.\n"
	       "Exit status: 0 done, 64 usage, 65 a message too large for NAME, 69 Redis\n"
	       "unreachable at start, 75 another bridge runs with these arguments, 1 other.\n",
	       BATCH_DEFAULT);
	return 0;
}

static bool parse_url(const char *url, struct opts *o)
{
	const char *p = url;
	if (strncmp(p, "redis://", 8))
		return false;
	p += 8;
	const char *slash = strchr(p, '/');
	if (!slash || !slash[1] || strlen(slash + 1) >= sizeof(o->stream))
		return false;
	size_t hl = (size_t)(slash - p);
	const char *colon = memchr(p, ':', hl);
	o->port = 6379;
	if (colon) {
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if (end != slash || port <= 0 || port > 65535)
			return false;
		o->port = (int)port;
		hl = (size_t)(colon - p);
	}
	if (hl == 0 || hl >= sizeof(o->host))
		return false;
	memcpy(o->host, p, hl);
	o->host[hl] = 0;
	strcpy(o->stream, slash + 1);
	return true;
}

static bool parse_queue(const char *s, char out[QNAME_MAX])
{
	size_t n = strlen(s);
	if (n == 0 || n + 2 > QNAME_MAX || strchr(s + 1, '/'))
		return false;
	snprintf(out, QNAME_MAX, "%s%s", s[0] == '/' ? "" : "/", s);
	return true;
}

static bool parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	return parse_u64(s, strlen(s), out) && *out >= lo && *out <= hi;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_BATCH = 1, O_MAXLEN, O_GROUP, O_PRODUCERS, O_DEDUP, O_CLAIM, O_JOIN };
	static const struct option longs[] = {
		{ "batch", required_argument, 0, O_BATCH },
		{ "maxlen", required_argument, 0, O_MAXLEN },
		{ "group", required_argument, 0, O_GROUP },
		{ "producers", required_argument, 0, O_PRODUCERS },
		{ "dedup", no_argument, 0, O_DEDUP },
		{ "claim-idle", required_argument, 0, O_CLAIM },
		{ "join-with", required_argument, 0, O_JOIN },
		{ 0, 0, 0, 0 },
	};
	o->batch = BATCH_DEFAULT;
	o->claim_idle_ms = 60000;
	int c;
	uint64_t v;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case O_BATCH:
			if (!parse_num(optarg, 1, BATCH_MAX, &v))
				goto bad;
			o->batch = (unsigned)v;
			break;
		case O_MAXLEN:
			if (!parse_num(optarg, 1, UINT32_MAX, &o->maxlen))
				goto bad;
			break;
		case O_GROUP:
			if (!*optarg || strlen(optarg) >= sizeof(o->group))
				goto bad;
			strcpy(o->group, optarg);
			break;
		case O_PRODUCERS:
			if (!parse_num(optarg, 1, MAX_PRODUCERS, &v))
				goto bad;
			o->producers = (uint32_t)v;
			break;
		case O_DEDUP:
			o->dedup = true;
			break;
		case O_CLAIM:
			if (!parse_num(optarg, 1, 86400000, &v))
				goto bad;
			o->claim_idle_ms = (int64_t)v;
			break;
		case O_JOIN:
			if (o->njoin == MAX_JOIN_WITH || !parse_queue(optarg, o->join_with[o->njoin]))
				goto bad;
			o->njoin++;
			break;
		default:
			fprintf(stderr, "%s: unknown option or missing value: %s\n", prog,
				argv[optind - 1]);
			return usage();
		}
	}
	if (argc - optind != 2)
		return usage();
	const char *queue = o->dir == 'o' ? argv[optind] : argv[optind + 1];
	const char *url = o->dir == 'o' ? argv[optind + 1] : argv[optind];
	if (!parse_queue(queue, o->queue)) {
		fprintf(stderr, "%s: bad queue name '%s'\n", prog, queue);
		return usage();
	}
	if (!parse_url(url, o)) {
		fprintf(stderr, "%s: bad address '%s' (want redis://HOST[:PORT]/STREAM)\n", prog, url);
		return usage();
	}
	if (o->dir == 'i' && !o->group[0]) {
		fprintf(stderr, "%s: in needs --group G\n", prog);
		return usage();
	}
	if (o->dir == 'o' && (o->group[0] || o->producers || o->dedup || o->njoin)) {
		fprintf(stderr, "%s: --group, --producers, --dedup and --join-with are for `in`\n",
			prog);
		return usage();
	}
	if (o->dir == 'i' && o->maxlen) {
		fprintf(stderr, "%s: --maxlen is for `out`\n", prog);
		return usage();
	}
	return 0;
bad:
	fprintf(stderr, "%s: bad value '%s' for %s\n", prog, optarg, argv[optind - 1]);
	return usage();
}

static int bridge_main(struct opts *o)
{
	struct bridge b = { .o = o };
	b.rd.o = o;
	snprintf(b.rd.seq_key, sizeof(b.rd.seq_key), "%s:seq", o->stream);
	snprintf(b.rd.done_key, sizeof(b.rd.done_key), "%s:done", o->stream);
	ssize_t n = readlink("/proc/self/exe", b.self_path, sizeof(b.self_path) - 1);
	if (n <= 0) {
		say("cannot find my own executable: %s", strerror(errno));
		return 1;
	}
	b.self_path[n] = 0;

	/* The local queue first (a clear error for a typo), then Redis. */
	shmq_queue *look;
	int r = shmq_queue_open(o->queue, 0, &look);
	if (r < 0) {
		say("cannot open the queue %s: %s", o->queue, strerror(-r));
		return r == -ENOENT ? EX_NOINPUT : 1;
	}
	struct shmq_stat st;
	shmq_queue_stat(look, &st);
	b.local_msg_max = shmq_msg_max(look);
	b.joinable = st.flags & SHMQ_JOINABLE;
	shmq_queue_close(look);

	r = redis_connect(&b.rd);
	if (r < 0)
		return r == -EIO || r == -ENOMEM ? EX_UNAVAILABLE : EX_PROTOCOL;

	if ((r = window_adopt(&b, b.local_msg_max)) != 0) {
		redis_drop(&b.rd);
		return r;
	}
	struct win *w = b.win.w;
	atomic_fetch_add(&w->epoch, 1);
	if (!keeper_alive(w) && (r = keeper_spawn(&b)) < 0) {
		say("cannot start the keeper for %s: %s", o->queue, strerror(-r));
		shmq_lock_release(b.win.lock);
		window_close(&b.win);
		redis_drop(&b.rd);
		return 1;
	}
	r = o->dir == 'o' ? bridge_out(&b) : bridge_in(&b);
	shmq_lock_release(b.win.lock);
	window_close(&b.win);
	redis_drop(&b.rd);
	return r;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return help();
	if (argc == 3 && !strcmp(argv[1], "keeper")) {
		signal(SIGTERM, on_stop);
		signal(SIGINT, SIG_IGN); /* a terminal's ^C is for the bridge */
		signal(SIGHUP, SIG_IGN);
		return keeper_main(argv[2]);
	}
	if (argc < 2)
		return usage();
	struct opts o = { 0 };
	if (!strcmp(argv[1], "out"))
		o.dir = 'o';
	else if (!strcmp(argv[1], "in"))
		o.dir = 'i';
	else
		return usage();
	int r = parse_args(argc - 1, argv + 1, &o);
	if (r)
		return r;
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return bridge_main(&o);
}
