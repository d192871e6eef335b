/* The host-owned Modbus server: one serving thread (RTU) or one accept
 * thread plus one thread per client (TCP), answering from a register image
 * that the main loop fills and commits.
 *
 * Serving rules (libmodbus 3.1.6): one context serves one unit id; every
 * request is checked against the map before modbus_reply() (function code,
 * the whole range inside served blocks, writability and range) and
 * otherwise answered with the exception a real meter gives; FC04 is served
 * from the FC03 image when the map lists read code 4; accepted writes are
 * posted to the main loop, never written into the live image by
 * modbus_reply(); the image is copied under a lock held only for the copy,
 * so a reply never mixes two commits. */
#include "wb-map.h"

#include <arpa/inet.h>
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define N_ADDR 65536
#define POLL_US 100000 /* how often a blocked thread looks at the stop flag */
#define MAX_WRITE_REGS 123

typedef struct _Client Client;

typedef struct {
    gboolean used;
    guint8 *readable;     /* per address: may be read (block or register, not no-read) */
    gint32 *reg_at;       /* per address: index of the register covering it, -1 */
    guint16 *staging;
    guint16 *live;
    GArray *spans;        /* WbMapBlock: the readable address ranges, to commit */
} Image;

struct _WbModbusServer {
    gint ref;
    WbInstance *inst;
    gpointer cleanup;
    WbMap *map;

    gboolean tcp;
    char *device;
    int baud;
    char parity;
    int data_bits;
    int stop_bits;
    gint64 reopen_delay;
    char *bind;
    guint port;
    guint max_clients;
    gint64 idle_timeout;
    guint unit_id;

    /* [0] holding registers, [1] input registers (when the map has them;
     * otherwise FC04 reads the holding image if the map allows) */
    Image images[2];

    gint staging_mode;
    guint staging_code;
    gint64 staging_deadline;
    gint staging_after_mode;
    guint staging_after_code;

    GMutex lock;          /* guards the live images and modes; held only to copy */
    gint live_mode;       /* also read atomically without the lock */
    guint live_code;
    gint64 live_deadline; /* 0: none; after it, live_after_mode applies */
    gint live_after_mode;
    guint live_after_code;

    GThread *thread;
    gint stop;
    int listen_fd;
    GPtrArray *clients;   /* Client*, accept thread only */

    WbModbusWriteFunc write_func;
    gpointer write_data;
    gboolean freed;
    gboolean deadline_reported; /* guarded by lock */
};

struct _Client {
    WbModbusServer *server;
    int fd;
    char *peer;
    GThread *thread;
    gint done;
};

static WbModbusServer *server_ref(WbModbusServer *s)
{
    g_atomic_int_inc(&s->ref);
    return s;
}

static void server_unref(WbModbusServer *s)
{
    if (!g_atomic_int_dec_and_test(&s->ref))
        return;
    wb_map_unref(s->map);
    g_free(s->device);
    g_free(s->bind);
    for (int i = 0; i < 2; i++) {
        g_free(s->images[i].readable);
        g_free(s->images[i].reg_at);
        g_free(s->images[i].staging);
        g_free(s->images[i].live);
        if (s->images[i].spans)
            g_array_unref(s->images[i].spans);
    }
    g_mutex_clear(&s->lock);
    g_free(s);
}

static gboolean stopping(WbModbusServer *s)
{
    return g_atomic_int_get(&s->stop) != 0;
}

/* ---- requests (serving threads) ---------------------------------------- */

typedef struct {
    WbModbusServer *server;
    guint n;
    guint index[MAX_WRITE_REGS];
    double value[MAX_WRITE_REGS];
} WriteJob;

static void write_job_free(gpointer data)
{
    WriteJob *job = data;
    server_unref(job->server);
    g_free(job);
}

static Image *image_of(WbModbusServer *s, const WbMapRegister *reg)
{
    if (reg->table == WB_MAP_HOLDING)
        return &s->images[0];
    if (reg->table == WB_MAP_INPUT)
        return &s->images[1];
    return NULL; /* coils and discrete inputs are not served */
}

static void store_value(WbModbusServer *s, const WbMapRegister *reg, double value)
{
    guint16 words[4];
    Image *img = image_of(s, reg);
    if (!img || reg->size > 4 || !wb_map_register_encode(reg, value, words, NULL))
        return;
    memcpy(&img->staging[reg->address], words, reg->size * sizeof(guint16));
}

static gboolean apply_writes(gpointer data)
{
    WriteJob *job = data;
    WbModbusServer *s = job->server;
    if (s->freed)
        return G_SOURCE_REMOVE;
    for (guint i = 0; i < job->n; i++) {
        const WbMapRegister *reg = g_ptr_array_index(s->map->registers, job->index[i]);
        if (s->write_func) {
            s->write_func(s, reg, job->value[i], s->write_data);
        } else {
            g_autofree char *key = g_strdup_printf("write:%s", reg->name);
            wb_log(s->inst, WB_LOG_DEBUG, "write: %s = %g%s%s", reg->name, job->value[i], *reg->unit ? " " : "",
                   reg->unit);
            wb_log_ratelimited(s->inst, WB_LOG_NOTICE, key,
                               "a master wrote %s = %g%s%s; stored, so reads return it (the unit id and line "
                               "settings served still come from the configuration)",
                               reg->name, job->value[i], *reg->unit ? " " : "", reg->unit);
            store_value(s, reg, job->value[i]);
        }
    }
    if (!s->write_func)
        wb_modbus_server_commit(s);
    return G_SOURCE_REMOVE;
}

/* Checks a write request; fills @job.  Returns 0 or an exception code. */
static guint check_write(WbModbusServer *s, guint fc, guint addr, guint count, const guint8 *data, WriteJob *job)
{
    guint a = addr;
    job->n = 0;
    while (a < addr + count) {
        if (a >= N_ADDR || s->images[0].reg_at[a] < 0)
            return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        const WbMapRegister *reg = g_ptr_array_index(s->map->registers, s->images[0].reg_at[a]);
        /* whole registers only, and only writable ones */
        if (!reg->writable || reg->address != a || a + reg->size > addr + count)
            return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        if (!wb_map_register_writes_with(reg, fc)) /* the map's write-codes, per register */
            return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
        guint16 words[4];
        for (guint i = 0; i < reg->size; i++) {
            const guint8 *w = data + 2 * (a - addr + i);
            words[i] = (guint16)((w[0] << 8) | w[1]);
        }
        double v = wb_map_register_decode(reg, words);
        if (reg->has_range && (v < reg->min || v > reg->max))
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        job->index[job->n] = (guint)s->images[0].reg_at[a];
        job->value[job->n] = v;
        job->n++;
        a += reg->size;
    }
    return 0;
}

/* Answers one request.  @was_silent tracks SILENT for the input flush. */
static void handle_request(WbModbusServer *s, modbus_t *ctx, const guint8 *req, int len,
                           modbus_mapping_t *scratch, gboolean *was_silent)
{
    int hl = modbus_get_header_length(ctx);
    guint unit = req[hl - 1];
    guint fc = req[hl];
    guint addr = (len > hl + 2) ? (guint)((req[hl + 1] << 8) | req[hl + 2]) : 0;
    guint count = (len > hl + 4) ? (guint)((req[hl + 3] << 8) | req[hl + 4]) : 0;
    guint code = 0;
    gboolean is_read = FALSE;
    const Image *img = &s->images[0];

    if (!s->tcp && unit == 0)
        return; /* broadcast: never answered; writes by broadcast are not applied either */
    if (s->tcp && unit != s->unit_id) {
        modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_GATEWAY_TARGET);
        return;
    }
    int mode = g_atomic_int_get(&s->live_mode);
    if (mode == WB_MODBUS_SILENT) {
        *was_silent = TRUE;
        return;
    }
    gint64 now = g_get_monotonic_time();

    switch (fc) {
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
        is_read = TRUE;
        if (fc == MODBUS_FC_READ_INPUT_REGISTERS && s->images[1].used)
            img = &s->images[1];
        if ((fc == MODBUS_FC_READ_HOLDING_REGISTERS && !s->map->read_fc3) ||
            (fc == MODBUS_FC_READ_INPUT_REGISTERS && !s->images[1].used && !s->map->read_fc4)) {
            code = MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
        } else if (count < 1 || count > MODBUS_MAX_READ_REGISTERS) {
            code = MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        } else {
            for (guint a = addr; a < addr + count; a++)
                if (a >= N_ADDR || !img->readable[a]) {
                    code = MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
                    break;
                }
        }
        break;
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        break;
    default:
        code = MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
        break;
    }

    /* Snapshot: the mode and the requested words of one commit. */
    guint exc = 0;
    gboolean report_deadline = FALSE;
    g_mutex_lock(&s->lock);
    mode = s->live_mode;
    if (mode == WB_MODBUS_SERVE && s->live_deadline && now > s->live_deadline) {
        /* no commit came in time (the main loop stalled): never serve an
         * image past its data's freshness */
        mode = s->live_after_mode;
        exc = s->live_after_code;
        report_deadline = !s->deadline_reported;
        s->deadline_reported = TRUE;
    } else if (mode == WB_MODBUS_EXCEPTION) {
        exc = s->live_code;
    }
    else if (is_read && !code)
        memcpy(&scratch->tab_registers[addr], &img->live[addr], count * sizeof(guint16));
    g_mutex_unlock(&s->lock);

    if (report_deadline)
        wb_log(s->inst, WB_LOG_WARNING, "no fresh image from the main loop in time; %s until one comes",
               mode == WB_MODBUS_SILENT ? "silent" : "answering an exception");
    if (mode == WB_MODBUS_SILENT) {
        *was_silent = TRUE;
        return;
    }
    if (mode == WB_MODBUS_EXCEPTION) {
        modbus_reply_exception(ctx, req, exc);
        return;
    }
    if (code) {
        modbus_reply_exception(ctx, req, code);
        return;
    }
    if (is_read) {
        modbus_reply(ctx, req, len, scratch);
        return;
    }

    /* a write */
    WriteJob *job = g_new0(WriteJob, 1);
    if (fc == MODBUS_FC_WRITE_SINGLE_REGISTER) {
        code = check_write(s, (guint)fc, addr, 1, req + hl + 3, job);
    } else if (count < 1 || count > MAX_WRITE_REGS || req[hl + 5] != count * 2) {
        code = MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    } else {
        code = check_write(s, (guint)fc, addr, count, req + hl + 6, job);
    }
    if (code) {
        g_free(job);
        modbus_reply_exception(ctx, req, code);
        return;
    }
    job->server = server_ref(s);
    wb_instance_invoke(s->inst, apply_writes, job, write_job_free);
    /* modbus_reply() writes into the scratch mapping only; it builds the echo */
    modbus_reply(ctx, req, len, scratch);
}

static modbus_mapping_t *scratch_new(void)
{
    modbus_mapping_t *m = modbus_mapping_new_start_address(0, 0, 0, 0, 0, N_ADDR, 0, 0);
    /* FC04 reads the same words as FC03 */
    m->tab_input_registers = m->tab_registers;
    m->nb_input_registers = m->nb_registers;
    m->start_input_registers = m->start_registers;
    return m;
}

static void scratch_free(modbus_mapping_t *m)
{
    m->tab_input_registers = NULL;
    m->nb_input_registers = 0;
    modbus_mapping_free(m);
}

static void sleep_interruptible(WbModbusServer *s, gint64 us)
{
    gint64 end = g_get_monotonic_time() + us;
    while (!stopping(s) && g_get_monotonic_time() < end)
        g_usleep(MIN(POLL_US, MAX(end - g_get_monotonic_time(), 0)));
}

/* ---- RTU --------------------------------------------------------------- */

static modbus_t *rtu_open(WbModbusServer *s, GString *why)
{
    modbus_t *ctx = modbus_new_rtu(s->device, s->baud, s->parity, s->data_bits, s->stop_bits);
    if (!ctx) {
        g_string_printf(why, "%s", modbus_strerror(errno));
        return NULL;
    }
    modbus_set_slave(ctx, (int)s->unit_id);
    if (modbus_connect(ctx) == -1) {
        g_string_printf(why, "%s", modbus_strerror(errno));
        modbus_free(ctx);
        return NULL;
    }
    /* libmodbus does not lock the port; two programs on one line garble it */
    if (ioctl(modbus_get_socket(ctx), TIOCEXCL) == -1) {
        g_string_printf(why, "cannot lock it (TIOCEXCL): %s", g_strerror(errno));
        modbus_close(ctx);
        modbus_free(ctx);
        return NULL;
    }
    modbus_set_indication_timeout(ctx, 0, POLL_US);
    /* requests a master sent before we were here are old: never answer them
     * (the master has moved on, and would take the answer for another's) */
    modbus_flush(ctx);
    return ctx;
}

static gpointer rtu_thread(gpointer data)
{
    WbModbusServer *s = data;
    modbus_mapping_t *scratch = scratch_new();
    modbus_t *ctx = NULL;
    gboolean was_silent = FALSE;
    gboolean reported = FALSE;
    guint8 req[MODBUS_RTU_MAX_ADU_LENGTH];
    g_autoptr(GString) why = g_string_new(NULL);

    while (!stopping(s)) {
        if (!ctx) {
            ctx = rtu_open(s, why);
            if (!ctx) {
                if (!reported)
                    wb_log(s->inst, WB_LOG_ERROR, "cannot open %s: %s; retrying every %.3g s", s->device, why->str,
                           (double)s->reopen_delay / 1e6);
                reported = TRUE;
                sleep_interruptible(s, s->reopen_delay);
                continue;
            }
            wb_log(s->inst, WB_LOG_NOTICE, "serving Modbus RTU on %s (%d %d%c%d), unit id %u, map %s", s->device,
                   s->baud, s->data_bits, s->parity, s->stop_bits, s->unit_id, s->map->name);
            reported = FALSE;
        }
        if (was_silent && g_atomic_int_get(&s->live_mode) != WB_MODBUS_SILENT) {
            /* answering resumes: whatever arrived meanwhile is old */
            modbus_flush(ctx);
            was_silent = FALSE;
        }
        int rc = modbus_receive(ctx, req);
        if (rc == 0)
            continue; /* for another unit id */
        if (rc < 0) {
            int err = errno;
            if (err == ETIMEDOUT)
                continue;
            if (err == EMBBADCRC || err == EMBBADDATA || err == EMBMDATA || err == EMBBADSLAVE) {
                wb_log_ratelimited(s->inst, WB_LOG_WARNING, "rtu-garbage", "discarded a bad frame on %s: %s",
                                   s->device, modbus_strerror(err));
                modbus_flush(ctx);
                continue;
            }
            wb_log(s->inst, WB_LOG_ERROR, "%s failed: %s; reopening in %.3g s", s->device, modbus_strerror(err),
                   (double)s->reopen_delay / 1e6);
            modbus_close(ctx);
            modbus_free(ctx);
            ctx = NULL;
            sleep_interruptible(s, s->reopen_delay);
            continue;
        }
        handle_request(s, ctx, req, rc, scratch, &was_silent);
    }
    if (ctx) {
        modbus_close(ctx);
        modbus_free(ctx);
    }
    scratch_free(scratch);
    return NULL;
}

/* ---- TCP --------------------------------------------------------------- */

static gpointer client_thread(gpointer data)
{
    Client *c = data;
    WbModbusServer *s = c->server;
    modbus_mapping_t *scratch = scratch_new();
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", 502); /* only its framing is used */
    guint8 req[MODBUS_TCP_MAX_ADU_LENGTH];
    gboolean was_silent = FALSE;
    gint64 last = g_get_monotonic_time();

    modbus_set_socket(ctx, c->fd);
    modbus_set_indication_timeout(ctx, 0, POLL_US);
    while (!stopping(s)) {
        int rc = modbus_receive(ctx, req);
        if (rc < 0) {
            int err = errno;
            if (err == ETIMEDOUT) {
                if (g_get_monotonic_time() - last > s->idle_timeout) {
                    wb_log(s->inst, WB_LOG_INFO, "closing Modbus TCP client %s: idle for %.3g s", c->peer,
                           (double)s->idle_timeout / 1e6);
                    break;
                }
                continue;
            }
            if (err != ECONNRESET)
                wb_log(s->inst, WB_LOG_INFO, "closing Modbus TCP client %s: %s", c->peer, modbus_strerror(err));
            break;
        }
        last = g_get_monotonic_time();
        if (rc > 0)
            handle_request(s, ctx, req, rc, scratch, &was_silent);
    }
    modbus_close(ctx); /* closes c->fd */
    modbus_free(ctx);
    scratch_free(scratch);
    g_atomic_int_set(&c->done, 1);
    return NULL;
}

static void client_join(Client *c)
{
    g_thread_join(c->thread);
    g_free(c->peer);
    g_free(c);
}

static void reap_clients(WbModbusServer *s, gboolean all)
{
    for (guint i = s->clients->len; i-- > 0;) {
        Client *c = g_ptr_array_index(s->clients, i);
        if (all || g_atomic_int_get(&c->done)) {
            g_ptr_array_remove_index_fast(s->clients, i);
            client_join(c);
        }
    }
}

static gpointer accept_thread(gpointer data)
{
    WbModbusServer *s = data;
    while (!stopping(s)) {
        struct pollfd pfd = {.fd = s->listen_fd, .events = POLLIN};
        int rc = poll(&pfd, 1, POLL_US / 1000);
        reap_clients(s, FALSE);
        if (rc <= 0)
            continue;
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        char addr[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr);
        g_autofree char *label = g_strdup_printf("%s:%u", addr, ntohs(peer.sin_port));
        if (s->clients->len >= s->max_clients) {
            wb_log_ratelimited(s->inst, WB_LOG_WARNING, "max-clients", "refusing Modbus TCP client %s: %u clients "
                               "already connected (max-clients)", label, s->max_clients);
            close(fd);
            continue;
        }
        Client *c = g_new0(Client, 1);
        c->server = s;
        c->fd = fd;
        c->peer = g_steal_pointer(&label);
        wb_log(s->inst, WB_LOG_DEBUG, "Modbus TCP client %s connected", c->peer);
        c->thread = g_thread_new("wb-modbus-client", client_thread, c);
        g_ptr_array_add(s->clients, c);
    }
    reap_clients(s, TRUE);
    return NULL;
}

static gboolean tcp_listen(WbModbusServer *s, GError **error)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((guint16)s->port)};
    if (inet_pton(AF_INET, s->bind, &addr.sin_addr) != 1) {
        wb_config_set_error(wb_instance_get_config(s->inst), error, "bind", "expected an IPv4 address, got \"%s\"",
                            s->bind);
        return FALSE;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, (int)s->max_clients) != 0) {
        int err = errno;
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_IO, "cannot listen on %s:%u: %s%s", s->bind, s->port,
                    g_strerror(err),
                    err == EACCES ? " (ports below 1024 need CAP_NET_BIND_SERVICE)" : "");
        close(fd);
        return FALSE;
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.sin_port);
    s->listen_fd = fd;
    return TRUE;
}

/* ---- main-context API ---------------------------------------------------- */

static void server_cleanup(gpointer data)
{
    WbModbusServer *s = data;
    s->cleanup = NULL;
    wb_modbus_server_free(s);
}

WbModbusServer *wb_modbus_server_new(WbInstance *instance, WbMap *map, GError **error)
{
    g_return_val_if_fail(instance != NULL && map != NULL, NULL);
    const WbConfig *cfg = wb_instance_get_config(instance);
    const char *transport = wb_config_get_string(cfg, "transport");
    const char *parity = wb_config_get_string(cfg, "parity");

    WbModbusServer *s = g_new0(WbModbusServer, 1);
    s->ref = 1;
    s->inst = instance;
    s->map = wb_map_ref(map);
    s->listen_fd = -1;
    g_mutex_init(&s->lock);
    s->tcp = g_strcmp0(transport, "tcp") == 0;
    s->device = g_strdup(wb_config_get_string(cfg, "device"));
    s->baud = wb_config_get_string(cfg, "baud") ? (int)wb_config_get_int(cfg, "baud") : 9600;
    s->parity = g_strcmp0(parity, "even") == 0 ? 'E' : g_strcmp0(parity, "odd") == 0 ? 'O' : 'N';
    s->data_bits = wb_config_get_string(cfg, "data-bits") ? (int)wb_config_get_int(cfg, "data-bits") : 8;
    s->stop_bits = wb_config_get_string(cfg, "stop-bits") ? (int)wb_config_get_int(cfg, "stop-bits") : 1;
    s->reopen_delay = wb_config_get_string(cfg, "reopen-delay") ? wb_config_get_duration(cfg, "reopen-delay")
                                                                 : 5 * G_USEC_PER_SEC;
    s->bind = g_strdup(wb_config_get_string(cfg, "bind") ? wb_config_get_string(cfg, "bind") : "127.0.0.1");
    s->port = wb_config_get_string(cfg, "port") ? (guint)wb_config_get_int(cfg, "port") : 502;
    s->max_clients = wb_config_get_string(cfg, "max-clients") ? (guint)wb_config_get_int(cfg, "max-clients") : 4;
    s->idle_timeout = wb_config_get_string(cfg, "idle-timeout") ? wb_config_get_duration(cfg, "idle-timeout")
                                                                 : 60 * G_USEC_PER_SEC;
    s->unit_id = wb_config_get_string(cfg, "unit-id") ? (guint)wb_config_get_int(cfg, "unit-id")
                                                       : map->default_unit_id;

    if (!s->tcp && (!s->device || !*s->device)) {
        wb_config_set_error(cfg, error, "device", "transport = rtu needs the serial device (device = /dev/...)");
        server_unref(s);
        return NULL;
    }

    static const guint image_tables[2] = {WB_MAP_HOLDING, WB_MAP_INPUT};
    for (int k = 0; k < 2; k++) {
        Image *img = &s->images[k];
        guint table = image_tables[k];
        img->used = k == 0 || map->tables[table].has_blocks;
        for (guint i = 0; i < map->registers->len && !img->used; i++)
            img->used = ((const WbMapRegister *)g_ptr_array_index(map->registers, i))->table == table;
        if (!img->used)
            continue;
        img->readable = g_new0(guint8, N_ADDR);
        img->reg_at = g_new(gint32, N_ADDR);
        img->spans = g_array_new(FALSE, FALSE, sizeof(WbMapBlock));
        for (guint a = 0; a < N_ADDR; a++) {
            img->reg_at[a] = -1;
            img->readable[a] = wb_map_readable(map, table, a);
            if (!img->readable[a])
                continue;
            if (img->spans->len && g_array_index(img->spans, WbMapBlock, img->spans->len - 1).end == a - 1)
                g_array_index(img->spans, WbMapBlock, img->spans->len - 1).end = a;
            else
                g_array_append_val(img->spans, ((WbMapBlock){a, a}));
        }
        img->staging = g_new0(guint16, N_ADDR);
        img->live = g_new0(guint16, N_ADDR);
    }
    for (guint i = 0; i < map->registers->len; i++) {
        const WbMapRegister *r = g_ptr_array_index(map->registers, i);
        Image *img = image_of(s, r);
        if (!img || !img->used)
            continue;
        for (guint a = r->address; a < r->address + r->size; a++)
            img->reg_at[a] = (gint32)i;
        if (r->value_is_unit_id)
            store_value(s, r, s->unit_id);
        else if (r->has_value)
            store_value(s, r, r->value);
    }
    for (int k = 0; k < 2; k++)
        if (s->images[k].used)
            memcpy(s->images[k].live, s->images[k].staging, N_ADDR * sizeof(guint16));
    s->cleanup = wb_instance_add_cleanup(instance, server_cleanup, s);
    return s;
}

gboolean wb_modbus_server_start(WbModbusServer *s, GError **error)
{
    g_return_val_if_fail(s != NULL && !s->thread, FALSE);
    if (s->tcp) {
        if (!tcp_listen(s, error))
            return FALSE;
        s->clients = g_ptr_array_new();
        wb_log(s->inst, WB_LOG_NOTICE, "serving Modbus TCP on %s:%u, unit id %u, map %s", s->bind, s->port,
               s->unit_id, s->map->name);
        s->thread = g_thread_new("wb-modbus-accept", accept_thread, s);
    } else {
        s->thread = g_thread_new("wb-modbus-rtu", rtu_thread, s);
    }
    return TRUE;
}

void wb_modbus_server_free(WbModbusServer *s)
{
    if (!s || s->freed)
        return;
    s->freed = TRUE;
    if (s->cleanup) {
        wb_instance_remove_cleanup(s->inst, s->cleanup);
        s->cleanup = NULL;
    }
    g_atomic_int_set(&s->stop, 1);
    if (s->thread)
        g_thread_join(s->thread);
    if (s->clients)
        g_ptr_array_unref(s->clients);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    server_unref(s);
}

const WbMap *wb_modbus_server_get_map(WbModbusServer *s)
{
    g_return_val_if_fail(s != NULL, NULL);
    return s->map;
}

guint wb_modbus_server_get_unit_id(WbModbusServer *s)
{
    g_return_val_if_fail(s != NULL, 0);
    return s->unit_id;
}

guint wb_modbus_server_get_port(WbModbusServer *s)
{
    g_return_val_if_fail(s != NULL, 0);
    return s->tcp ? s->port : 0;
}

gboolean wb_modbus_server_set_value(WbModbusServer *s, const WbMapRegister *reg, double value, GError **error)
{
    g_return_val_if_fail(s != NULL && reg != NULL, FALSE);
    guint16 words[4];
    Image *img = image_of(s, reg);
    if (!img || !img->used || reg->size > 4) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_NOT_SUPPORTED, "%s: only holding and input registers "
                    "of up to 4 words are served", reg->name);
        return FALSE;
    }
    if (!wb_map_register_encode(reg, value, words, error))
        return FALSE;
    memcpy(&img->staging[reg->address], words, reg->size * sizeof(guint16));
    return TRUE;
}

void wb_modbus_server_set_mode(WbModbusServer *s, WbModbusServerMode mode, guint exception_code)
{
    g_return_if_fail(s != NULL);
    g_return_if_fail(mode != WB_MODBUS_EXCEPTION || (exception_code >= 1 && exception_code < MODBUS_EXCEPTION_MAX));
    s->staging_mode = mode;
    s->staging_code = exception_code;
}

void wb_modbus_server_set_valid_until(WbModbusServer *s, gint64 deadline_us, WbModbusServerMode mode,
                                      guint exception_code)
{
    g_return_if_fail(s != NULL);
    g_return_if_fail(mode != WB_MODBUS_SERVE);
    g_return_if_fail(mode != WB_MODBUS_EXCEPTION || (exception_code >= 1 && exception_code < MODBUS_EXCEPTION_MAX));
    s->staging_deadline = deadline_us;
    s->staging_after_mode = mode;
    s->staging_after_code = exception_code;
}

void wb_modbus_server_commit(WbModbusServer *s)
{
    g_return_if_fail(s != NULL);
    g_mutex_lock(&s->lock);
    for (int k = 0; k < 2; k++) {
        Image *img = &s->images[k];
        for (guint b = 0; img->used && b < img->spans->len; b++) {
            const WbMapBlock *blk = &g_array_index(img->spans, WbMapBlock, b);
            memcpy(&img->live[blk->start], &img->staging[blk->start], (blk->end - blk->start + 1) * sizeof(guint16));
        }
    }
    g_atomic_int_set(&s->live_mode, s->staging_mode);
    s->live_code = s->staging_code;
    s->live_deadline = s->staging_deadline;
    s->live_after_mode = s->staging_after_mode;
    s->live_after_code = s->staging_after_code;
    s->deadline_reported = FALSE;
    g_mutex_unlock(&s->lock);
}

void wb_modbus_server_set_write_func(WbModbusServer *s, WbModbusWriteFunc func, gpointer user_data)
{
    g_return_if_fail(s != NULL);
    s->write_func = func;
    s->write_data = user_data;
}
