/* The thin `pallet` client, native: kernel/launcher.py's protocol without an interpreter's start-up.
 *
 *     pallet-client PYTHON LAUNCHER [PALLET ARGS...]
 *
 * scripts/pallet execs it when it was built beside it (scripts/setup.sh: `cc -O2 -o <bin>/pallet-client
 * kernel/client.c`); PYTHON is the environment's interpreter and LAUNCHER scripts/pallet itself. A
 * Python start (-I -S) is 8-10 ms on this machine, most of what `pallet --version` or `ps` costs with
 * the engine up; this is ~1 ms. It does exactly what kernel/launcher.py does, and hands anything it does
 * not handle to that launcher (`PYTHON -I -S LAUNCHER ARGS`): a config file that mentions `engine` (its
 * [engine] table is TOML), an argument or variable that is not UTF-8, a socket path too long for
 * sun_path. Without a socket it runs the command directly (`PYTHON -P -m pallet.kernel.cli ARGS`), and
 * says the same one-line messages as the launcher when an engine is dead or went away.
 *
 * Messages are Python's marshal format (what the engine reads and writes): a dict of str keys whose
 * values are str, int or lists of str. Written here with the plain types (no back-references), which
 * marshal.loads reads like its own; read back with the flag bit and short/interned string types that
 * marshal.dumps uses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SOCKET_NAME "engine.sock"
#define DEFAULT_CONFIG "/etc/pallet/pallet.toml"
#define DEFAULT_RUN_ROOT "/run/pallet"
#define MAX_MESSAGE (1 << 16)

extern char **environ;

static const char *python, *launcher;
static char **args;   /* the pallet arguments, NULL-terminated */
static int nargs;
static int engine_sock = -1;
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGUSR1, SIGUSR2};
#define NFORWARDED ((int)(sizeof forwarded / sizeof forwarded[0]))

static void say(const char *format, ...) {
    char line[4096];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(line, sizeof line - 1, format, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = write(2, line, n);
    (void)ignored;
}

static void exec_with(const char *const *before, int nbefore) {
    char **argv = calloc(nbefore + nargs + 1, sizeof *argv);
    if (!argv) { say("pallet: out of memory"); exit(1); }
    for (int i = 0; i < nbefore; i++) argv[i] = (char *)before[i];
    for (int i = 0; i < nargs; i++) argv[nbefore + i] = args[i];
    execvp(python, argv);
    say("pallet: cannot run %s: %s", python, strerror(errno));
    exit(127);
}

/* What kernel/launcher.py would do from here on: it handles the cases this client leaves alone. */
static void run_launcher(void) {
    const char *before[] = {python, "-I", "-S", launcher};
    exec_with(before, 4);
}

/* The direct path, as the launcher's run_direct: -P keeps the cwd off sys.path. */
static void run_direct(void) {
    const char *before[] = {python, "-P", "-m", "pallet.kernel.cli"};
    exec_with(before, 4);
}

static int utf8_valid(const unsigned char *s) {
    while (*s) {
        int extra;
        unsigned int c = *s;
        if (c < 0x80) { s++; continue; }
        else if ((c & 0xE0) == 0xC0 && c >= 0xC2) extra = 1;
        else if ((c & 0xF0) == 0xE0) extra = 2;
        else if ((c & 0xF8) == 0xF0 && c <= 0xF4) extra = 3;
        else return 0;
        unsigned int code = c & (0x3F >> extra);
        for (int i = 1; i <= extra; i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            code = (code << 6) | (s[i] & 0x3F);
        }
        if ((extra == 2 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) || (extra == 3 && (code < 0x10000 || code > 0x10FFFF)))
            return 0;
        s += extra + 1;
    }
    return 1;
}

/* --- the global options before the command word (launcher.global_options) ------------------ */

static const char *value_options[] = {"--root", "--run-root", "--storage-driver", "-s", "--storage-opt", "--config",
                                      "--cluster-store", NULL};
static const char *opt_root, *opt_run_root, *opt_config, *command;

static int is_value_option(const char *name, size_t len) {
    for (int i = 0; value_options[i]; i++)
        if (strlen(value_options[i]) == len && strncmp(value_options[i], name, len) == 0) return 1;
    return 0;
}

static void global_options(void) {
    for (int i = 0; i < nargs; i++) {
        const char *arg = args[i];
        if (strcmp(arg, "--") == 0) { command = i + 1 < nargs ? args[i + 1] : NULL; return; }
        if (arg[0] != '-' || strcmp(arg, "-") == 0) { command = arg; return; }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (!is_value_option(arg, len)) continue;
        const char *value;
        if (eq) value = eq + 1;
        else { i++; value = i < nargs ? args[i] : ""; }
        /* the first occurrence counts, as dict.setdefault */
        if (len == 6 && strncmp(arg, "--root", 6) == 0) { if (!opt_root) opt_root = value; }
        else if (len == 10 && strncmp(arg, "--run-root", 10) == 0) { if (!opt_run_root) opt_run_root = value; }
        else if (len == 8 && strncmp(arg, "--config", 8) == 0) { if (!opt_config) opt_config = value; }
    }
    command = NULL;
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

/* launcher.run_root; a config file that mentions "engine" goes to the launcher (its TOML). */
static char *run_root(void) {
    const char *explicit = nonempty(opt_run_root);
    if (!explicit) explicit = nonempty(getenv("PALLET_RUN_ROOT"));
    if (explicit) return strdup(explicit);
    const char *config = nonempty(opt_config);
    if (!config) config = nonempty(getenv("PALLET_CONFIG"));
    if (!config) config = DEFAULT_CONFIG;
    FILE *file = fopen(config, "rb");
    if (file) {   /* launcher.config_engine_section: TOML is parsed only when the file mentions "engine" */
        static char data[1 << 20];
        size_t n = fread(data, 1, sizeof data, file);
        int whole = feof(file);
        fclose(file);
        if (!whole || memmem(data, n, "engine", 6)) run_launcher();
    }
    const char *root = nonempty(opt_root);
    if (!root) root = nonempty(getenv("PALLET_ROOT"));
    if (!root) return strdup(DEFAULT_RUN_ROOT);
    size_t len = strlen(root);
    char *joined = malloc(len + 5);
    if (!joined) exit(1);
    snprintf(joined, len + 5, root[len - 1] == '/' ? "%srun" : "%s/run", root);
    return joined;
}

/* --- marshal ------------------------------------------------------------------------------- */

struct buffer { unsigned char *data; size_t len, cap; };

static void put(struct buffer *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) { say("pallet: out of memory"); exit(1); }
        b->data = grown, b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void put_int32(struct buffer *b, int32_t value) {
    unsigned char le[4] = {value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff, ((uint32_t)value >> 24) & 0xff};
    put(b, le, 4);
}

static void put_str(struct buffer *b, const char *s, size_t len) {
    put(b, "u", 1);
    put_int32(b, (int32_t)len);
    put(b, s, len);
}

static void put_int(struct buffer *b, int32_t value) {
    put(b, "i", 1);
    put_int32(b, value);
}

/* One decoded reply: the dict's only key and its value (an int or a string). */
struct reply { char key[32]; int is_int; long number; char text[MAX_MESSAGE]; };

struct reader { const unsigned char *p, *end; };

static int get_int32(struct reader *r, int32_t *out) {
    if (r->end - r->p < 4) return 0;
    *out = (int32_t)((uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24);
    r->p += 4;
    return 1;
}

/* A str or an int; strings are copied into text (NUL-terminated). Returns 1 for str, 2 for int, 0 on error. */
static int get_value(struct reader *r, char *text, size_t size, long *number) {
    if (r->p >= r->end) return 0;
    unsigned char type = *r->p++ & 0x7f;   /* FLAG_REF: the object may be referred to later; none is here */
    int32_t len;
    switch (type) {
    case 'i':
        if (!get_int32(r, &len)) return 0;
        *number = len;
        return 2;
    case 'z': case 'Z':   /* short ASCII: one length byte */
        if (r->p >= r->end) return 0;
        len = *r->p++;
        break;
    case 'u': case 't': case 'a': case 'A':
        if (!get_int32(r, &len) || len < 0) return 0;
        break;
    default:
        return 0;
    }
    if (r->end - r->p < len || (size_t)len >= size) return 0;
    memcpy(text, r->p, len);
    text[len] = 0;
    r->p += len;
    return 1;
}

static int decode(const unsigned char *data, size_t len, struct reply *out) {
    struct reader r = {data, data + len};
    if (len < 2 || (data[0] & 0x7f) != '{') return 0;
    r.p++;
    long ignored;
    if (get_value(&r, out->key, sizeof out->key, &ignored) != 1) return 0;
    int kind = get_value(&r, out->text, sizeof out->text, &out->number);
    if (!kind) return 0;
    out->is_int = kind == 2;
    return r.p < r.end && *r.p == '0';
}

/* --- the connection ------------------------------------------------------------------------ */

static int connect_engine(const char *path) {
    struct stat before;
    if (stat(path, &before) != 0) return -1;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) run_launcher();
    strcpy(address.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0) return -1;
    while (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        int err = errno;
        if (err == EINTR) continue;
        close(sock);
        if (err == ECONNREFUSED || err == ENOENT) {
            if (!S_ISSOCK(before.st_mode)) {
                say("pallet: %s is not an engine socket; running the command directly", path);
                return -1;
            }
            say("pallet: the engine at %s is not running (stale socket removed); running the command directly", path);
            struct stat now;
            if (stat(path, &now) == 0 && now.st_ino == before.st_ino) unlink(path);
            return -1;
        }
        if (err == EACCES || err == EPERM) return -1;   /* not ours: the direct path says what this user may do */
        say("pallet: cannot use the engine socket %s (%s); running the command directly", path, strerror(err));
        return -1;
    }
    return sock;
}

static int send_request(int sock) {
    struct buffer b = {0};
    mode_t mask = umask(0);
    umask(mask);
    char *cwd = getcwd(NULL, 0);
    put(&b, "{", 1);
    put_str(&b, "argv", 4);
    put(&b, "[", 1);
    put_int32(&b, nargs);
    for (int i = 0; i < nargs; i++) put_str(&b, args[i], strlen(args[i]));
    put_str(&b, "env", 3);
    put(&b, "{", 1);
    for (char **entry = environ; *entry; entry++) {
        const char *eq = strchr(*entry, '=');
        if (!eq) continue;   /* os.environ skips such entries, and keeps the first of a name given twice */
        int seen = 0;
        for (char **earlier = environ; earlier < entry && !seen; earlier++)
            seen = strncmp(*earlier, *entry, eq - *entry + 1) == 0;
        if (seen) continue;
        put_str(&b, *entry, eq - *entry);
        put_str(&b, eq + 1, strlen(eq + 1));
    }
    put(&b, "0", 1);
    put_str(&b, "cwd", 3);
    put_str(&b, cwd ? cwd : "/", strlen(cwd ? cwd : "/"));
    put_str(&b, "umask", 5);
    put_int(&b, (int32_t)mask);
    put(&b, "0", 1);
    free(cwd);

    int fds[3];
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        fds[fd] = fstat(fd, &st) == 0 ? fd : open("/dev/null", O_RDWR);
    }
    struct iovec iov = {b.data, b.len};
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof fds)]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                             .msg_controllen = sizeof control.space};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof fds);
    ssize_t sent;
    do sent = sendmsg(sock, &message, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    free(b.data);
    return sent >= 0;
}

/* The next message, decoded: 1; 0 when the connection is gone. A message this client cannot read ends it
 * (125): the engine may have taken the command, so running it directly could run it twice. */
static int receive(int sock, struct reply *out) {
    static unsigned char data[MAX_MESSAGE];
    ssize_t n;
    do n = recv(sock, data, sizeof data, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return 0;
    if (!decode(data, n, out)) {
        say("pallet: the engine sent a message this client does not read; the command's outcome is unknown");
        exit(125);
    }
    return 1;
}

static void forward(int signum) {
    int saved = errno;
    unsigned char message[] = {'{', 'u', 6, 0, 0, 0, 's', 'i', 'g', 'n', 'a', 'l', 'i',
                               signum & 0xff, 0, 0, 0, '0'};
    ssize_t ignored = send(engine_sock, message, sizeof message, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    errno = saved;
}

static void forward_signals(int on) {
    struct sigaction action = {.sa_handler = on ? forward : SIG_DFL, .sa_flags = SA_RESTART};
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < NFORWARDED; i++) sigaction(forwarded[i], &action, NULL);
}

static int run_like(const char *name) {
    static const char *names[] = {"run", "create", "start", "exec", "wait", NULL};
    for (int i = 0; name && names[i]; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        say("usage: pallet-client PYTHON LAUNCHER [ARGS...] (scripts/pallet runs it)");
        return 2;
    }
    python = argv[1], launcher = argv[2], args = argv + 3, nargs = argc - 3;
    for (int i = 0; i < nargs; i++)
        if (!utf8_valid((const unsigned char *)args[i])) run_launcher();
    for (char **entry = environ; *entry; entry++)
        if (!utf8_valid((const unsigned char *)*entry)) run_launcher();
    global_options();
    const char *no_engine = getenv("PALLET_NO_ENGINE");
    if ((command && strcmp(command, "engine") == 0) || (no_engine && *no_engine)) run_direct();
    char *root = run_root();
    size_t len = strlen(root) + sizeof SOCKET_NAME + 1;
    char *path = malloc(len);
    if (!path) return 1;
    snprintf(path, len, root[0] && root[strlen(root) - 1] == '/' ? "%s%s" : "%s/%s", root, SOCKET_NAME);
    int sock = connect_engine(path);
    if (sock < 0) run_direct();
    engine_sock = sock;
    static struct reply reply, status;
    int got;
    if (!send_request(sock)) {
        got = receive(sock, &reply);   /* a refusal is sent before the request is read, and stays readable */
    } else {
        forward_signals(1);   /* from here signals go to the worker (queued by the engine until it exists) */
        got = receive(sock, &reply);
    }
    if (!got) {
        close(sock);
        forward_signals(0);
        say("pallet: the engine went away before taking the command; running it directly");
        run_direct();
    }
    if (strcmp(reply.key, "direct") == 0) {   /* the engine loaded other code than this environment asks for */
        close(sock);
        forward_signals(0);
        run_direct();
    }
    if (strcmp(reply.key, "refused") == 0) {
        say("Error: %s", reply.text);
        return run_like(command) ? 125 : 1;
    }
    if (!receive(sock, &status)) {
        say("pallet: lost the connection to the engine's worker; the command's outcome is unknown");
        return 125;
    }
    if (strcmp(status.key, "signal") == 0 && status.is_int) {   /* die of the same signal as the worker */
        int signum = (int)status.number;
        signal(signum, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, signum);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), signum);
        return 128 + signum;
    }
    if (strcmp(status.key, "exit") == 0 && status.is_int) return (int)status.number;
    return 1;
}
