/* shmq-bridge: the Redis connection, the Lua scripts that make each step
 * atomic, and reply parsing. */
#include "bridge.h"

/* Appends one or more entries of one out bridge, in sequence order, only
 * where they continue the sequence Redis holds for it (KEYS[2], a hash:
 * bridge id -> last sequence). ARGV: id, epoch, maxlen, then per entry
 * first, count, end (0/1), data. An entry wholly at or below the last
 * sequence is a resend: skipped. One that leaves a gap is refused with the
 * rest (a call sent by a dead connection may still land after a restarted
 * bridge's resync; the refused call is resent, cut where Redis now is). With
 * maxlen > 0, an entry is added only while the stream is shorter: the full
 * stream pushes back. Returns {status, last}: 1 all taken, 0 stream full,
 * -1 gap; last is the sequence Redis now holds. Atomic: Lua. */
const char add_lua[] =
	"local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')\n"
	"local maxlen = tonumber(ARGV[3])\n"
	"local status = 1\n"
	"for i = 4, #ARGV, 4 do\n"
	"  local first = tonumber(ARGV[i])\n"
	"  local n = tonumber(ARGV[i + 1])\n"
	"  if first + n - 1 > last then\n"
	"    if first ~= last + 1 then status = -1 break end\n"
	"    if maxlen > 0 and redis.call('XLEN', KEYS[1]) >= maxlen then status = 0 break end\n"
	"    if ARGV[i + 2] == '1' then\n"
	"      redis.call('XADD', KEYS[1], '*', 'p', ARGV[1], 'e', ARGV[2], 's', ARGV[i], 'n', ARGV[i + 1], 'end', '1')\n"
	"    else\n"
	"      redis.call('XADD', KEYS[1], '*', 'p', ARGV[1], 'e', ARGV[2], 's', ARGV[i], 'n', ARGV[i + 1], 'd', ARGV[i + 3])\n"
	"    end\n"
	"    last = first + n - 1\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', last))\n"
	"return {status, string.format('%d', last)}\n";

/* XACK, then drop from the stream what the group is done with (ARGV: group,
 * ids...): every entry below the group's oldest pending one, or, with none
 * pending, up to its last delivered. Atomic, so an entry is never removed
 * unacknowledged, and one acknowledged never lingers to count against
 * --maxlen. XTRIM MINID removes whole nodes of the stream: several times
 * cheaper per entry than XDEL of each id (measured: 7 us an id). The
 * stream serves one consumer group (the queue's far side). */
const char ack_lua[] =
	"local ids = {}\n"
	"for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end\n"
	"local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))\n"
	"local p = redis.call('XPENDING', KEYS[1], ARGV[1])\n"
	"local minid = p[2]\n"
	"if not minid then\n"
	"  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
	"    local f = {}\n"
	"    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
	"    if f['name'] == ARGV[1] then\n"
	"      local ms, seq = string.match(f['last-delivered-id'], '^(%d+)-(%d+)$')\n"
	"      if ms then minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if minid then redis.call('XTRIM', KEYS[1], 'MINID', minid) end\n"
	"return n\n";

void redis_drop(struct redis *rd)
{
	if (rd->c)
		redisFree(rd->c);
	rd->c = NULL;
}

bool redis_ok(struct redis *rd)
{
	return rd->c && !rd->c->err;
}

redisReply *cmd(struct redis *rd, int argc, const char **argv, const size_t *lens)
{
	if (!redis_ok(rd))
		return NULL;
	redisReply *r = redisCommandArgv(rd->c, argc, argv, lens);
	if (!r && rd->c->err)
		say("redis %s:%d: %s", rd->o->host, rd->o->port, rd->c->errstr);
	return r;
}

int load_script(struct redis *rd, const char *lua, char sha[41])
{
	const char *argv[] = { "SCRIPT", "LOAD", lua };
	redisReply *r = cmd(rd, 3, argv, NULL);
	if (!r)
		return -EIO;
	int rc = -EPROTO;
	if (r->type == REDIS_REPLY_STRING && r->len == 40) {
		memcpy(sha, r->str, 41);
		rc = 0;
	} else if (r->type == REDIS_REPLY_ERROR) {
		say("redis: SCRIPT LOAD: %s", r->str);
	}
	freeReplyObject(r);
	return rc;
}

/* Connect and prepare (scripts, the group). Returns 0, -EIO (no Redis: a
 * caller at start exits 69), -EPROTO (Redis refused a command). */
int redis_connect(struct redis *rd)
{
	redis_drop(rd);
	struct timeval tv = { 2, 0 };
	rd->c = redisConnectWithTimeout(rd->o->host, rd->o->port, tv);
	if (!rd->c)
		return -ENOMEM;
	if (rd->c->err) {
		say("cannot reach redis at %s:%d: %s", rd->o->host, rd->o->port, rd->c->errstr);
		redis_drop(rd);
		return -EIO;
	}
	/* Not inherited by a keeper we exec: a connection outliving a killed
	 * bridge would still take the answer to its blocked XREADGROUP, into
	 * our consumer's pending list, after the next bridge has read that. */
	fcntl(rd->c->fd, F_SETFD, FD_CLOEXEC);
	struct timeval io = { 10, 0 }; /* longer than any BLOCK we send */
	redisSetTimeout(rd->c, io);
	int r;
	if ((r = load_script(rd, add_lua, rd->add_sha)) < 0 ||
	    (r = load_script(rd, ack_lua, rd->ack_sha)) < 0) {
		redis_drop(rd);
		return r == -EPROTO ? r : -EIO;
	}
	if (rd->o->dir == 'i') {
		const char *argv[] = { "XGROUP", "CREATE", rd->o->stream, rd->o->group, "0", "MKSTREAM" };
		redisReply *rep = cmd(rd, 6, argv, NULL);
		if (!rep) {
			redis_drop(rd);
			return -EIO;
		}
		bool ok = rep->type != REDIS_REPLY_ERROR || !strncmp(rep->str, "BUSYGROUP", 9);
		if (!ok)
			say("redis: XGROUP CREATE %s %s: %s", rd->o->stream, rd->o->group, rep->str);
		freeReplyObject(rep);
		if (!ok) {
			redis_drop(rd);
			return -EPROTO;
		}
	}
	return 0;
}

/* Reconnect after a lost connection, backing off, until it works or a stop
 * is asked for. Returns 0 connected; -ECANCELED stopping; -EPROTO. */
int redis_reconnect(struct redis *rd)
{
	int backoff = BACKOFF_MIN_MS;
	for (;;) {
		if (stop_requested)
			return -ECANCELED;
		int r = redis_connect(rd);
		if (r == 0) {
			say("reconnected to redis at %s:%d", rd->o->host, rd->o->port);
			return 0;
		}
		if (r == -EPROTO)
			return r;
		sleep_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}

bool reply_is_int(const redisReply *r, long long *v)
{
	if (r->type == REDIS_REPLY_INTEGER) {
		*v = r->integer;
		return true;
	}
	if (r->type == REDIS_REPLY_STRING) {
		char *end;
		errno = 0;
		*v = strtoll(r->str, &end, 10);
		return !errno && end != r->str && !*end;
	}
	return false;
}

void hex64(uint64_t v, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, v);
}

bool parse_hex64(const char *s, size_t len, uint64_t *out)
{
	if (len != 16)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		int c = tolower((unsigned char)s[i]);
		if (!isxdigit(c))
			return false;
		v = v << 4 | (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
	}
	*out = v;
	return true;
}

bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	if (len == 0 || len > 19)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* A connection of a bridge that died (or that we dropped) may still have a
 * command on its way into Redis: an XREADGROUP answered after we re-read our
 * pending list would hide its entries there. Close it in Redis before
 * anything else, and note ours for the next bridge. Returns 0; -EIO. */
int take_over_connection(struct bridge *b)
{
	struct win *w = b->win.w;
	const char *id_argv[] = { "CLIENT", "ID" };
	redisReply *r = cmd(&b->rd, 2, id_argv, NULL);
	if (!r)
		return -EIO;
	long long self = 0;
	bool ok = reply_is_int(r, &self);
	freeReplyObject(r);
	uint64_t old = atomic_load(&w->redis_client);
	if (old && (!ok || (uint64_t)self != old)) {
		char num[24];
		snprintf(num, sizeof(num), "%" PRIu64, old);
		const char *kill_argv[] = { "CLIENT", "KILL", "ID", num };
		if (!(r = cmd(&b->rd, 4, kill_argv, NULL)))
			return -EIO;
		freeReplyObject(r); /* an error: it is gone already */
	}
	if (ok)
		atomic_store(&w->redis_client, (uint64_t)self);
	return 0;
}

/* Reconnect, backing off, and take over from the connection we lost.
 * Returns 0 connected; -EAGAIN lost again at once (call again); -ECANCELED
 * stopping; -EPROTO Redis refused to set up. */
int bridge_reconnect(struct bridge *b)
{
	int r = redis_reconnect(&b->rd);
	if (r < 0)
		return r;
	if (take_over_connection(b) < 0) {
		redis_drop(&b->rd);
		return -EAGAIN;
	}
	return 0;
}
