/* The Modbus master engine: host-owned ports shared by devices.
 *
 * A port is a line (serial device, TCP endpoint, or a TCP-to-RS485
 * converter carrying RTU frames), kept in the daemon's registry under its
 * canonical name, with one worker thread that owns the libmodbus context.
 * Devices (a unit id, owned by an instance) queue jobs; the worker runs
 * one request at a time, taking the devices in turn, and hands finished
 * jobs to the main context through wb_instance_invoke().
 *
 * Frames go through libmodbus (modbus_send_raw_request() and
 * modbus_receive_confirmation(): its framing, CRC and timeouts); we check
 * that an answer matches its request ourselves, as modbus_read_registers()
 * would, because the raw path is what lets us trace frames and see
 * exception codes.
 *
 * Locking: port->lock guards the devices' queues, their state and
 * counters, and the port's device list.  The worker never holds it while
 * talking on the line.  modbus_t is touched by the worker only. */
#include "wb-instance.h"
#include "wb-map.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <modbus.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

enum { TRANSPORT_RTU, TRANSPORT_TCP, TRANSPORT_RTU_OVER_TCP };
static const char *const transport_names[] = {"rtu", "tcp", "rtu-over-tcp"};
enum { RS485_NONE, RS485_KERNEL, RS485_RTS };
static const char *const rs485_names[] = {"none", "kernel", "rts"};

typedef struct {
    int transport;
    char *where;     /* the configured device path, or host:port */
    char *host;      /* tcp: host and service */
    char *service;
    int baud;
    char parity;
    int data_bits;
    int stop_bits;
    int rs485;
} Line;

typedef struct {
    WbModbusDevice *dev;
    char *instance;
    char *file;
    int line;        /* of its device or host key */
    char *key;
    char *settings;  /* "rtu 9600 8N1" */
    Line wants;      /* its line settings (no strings) */
} PortUser;

typedef struct _Port Port;

typedef struct {
    guint function;
    guint address;
    guint count;
    guint16 *words;  /* write: the values; read: the result */
    WbModbusStatus status;
    guint exception;
} Req;

struct _WbModbusJob {
    WbModbusDevice *dev;
    GArray *reqs;    /* Req */
    gboolean run_at_stop;
    gboolean cancelled;    /* its device was freed: ends after the request in progress */
    gboolean submitted;
    WbModbusJobFunc func;
    gpointer user_data;
    GDestroyNotify destroy;
    gint64 time;
    gboolean answered;
    gboolean first_answer;
    gint64 latency_sum;
    guint latency_n;
    /* the device's health when the job finished */
    guint64 h_requests, h_timeouts, h_crc, h_exceptions, h_other;
    guint64 h_by_code[12]; /* exceptions by code 1..11; [0]: others */
    gboolean h_connected;
};

struct _WbModbusDevice {
    gint ref;              /* atomic: the owner, jobs, deliveries */
    Port *port;
    WbInstance *inst;
    gpointer cleanup;
    WbMap *map;
    char *label;
    guint unit_id;
    gint64 timeout;
    guint retries;
    guint disconnect_after;
    gint64 backoff;
    gboolean trace;
    gint64 min_delay;
    /* main context: the health last published */
    gint64 health_time;
    int health_connected;  /* -1: never published */

    /* under port->lock */
    GQueue queue;          /* WbModbusJob*, waiting */
    WbModbusJob *current;  /* being run by the worker */
    guint next;            /* its next request */
    gboolean freed;
    gboolean abandon;      /* freed and out of time: cancel what is left */
    gint64 ready_at;       /* monotonic: not before (last answer + min-delay) */
    guint failures;        /* jobs in a row without any answer */
    gboolean disconnected;
    gint64 probe_at;
    gboolean answered_since_connect;
    guint64 requests, timeouts, crc, exceptions, other;
    guint64 by_code[12];
};

struct _Port {
    int refs;              /* main context: devices registered */
    WbDaemon *daemon;
    GHashTable *registry;  /* the daemon's, key -> Port* */
    char *key;
    Line line;
    gint64 reopen_delay;
    GPtrArray *users;      /* PortUser* */
    gboolean conflict;

    GMutex lock;
    GCond work;            /* a job was queued, or stop */
    GCond done;            /* a job finished */
    GThread *thread;
    gboolean stopping;
    GPtrArray *devices;    /* WbModbusDevice*, registered */
    guint rr;              /* round robin position */

    /* worker only */
    modbus_t *ctx;
    int socket_fd;         /* rtu-over-tcp: our socket */
    gint64 next_open;
    char *open_error;      /* the last reason reported, to log changes only */
};

/* ---- small helpers ----------------------------------------------------------- */

static WbModbusDevice *device_ref(WbModbusDevice *dev)
{
    g_atomic_int_inc(&dev->ref);
    return dev;
}

static void port_release(Port *p);

static void device_unref(WbModbusDevice *dev)
{
    if (!g_atomic_int_dec_and_test(&dev->ref))
        return;
    wb_map_unref(dev->map);
    wb_instance_unref(dev->inst);
    g_free(dev->label);
    g_free(dev);
}

static void job_free(WbModbusJob *job)
{
    if (!job)
        return;
    if (job->destroy)
        job->destroy(job->user_data);
    for (guint i = 0; i < job->reqs->len; i++)
        g_free(g_array_index(job->reqs, Req, i).words);
    g_array_unref(job->reqs);
    device_unref(job->dev);
    g_free(job);
}

static void user_free(gpointer data)
{
    PortUser *u = data;
    g_free(u->instance);
    g_free(u->file);
    g_free(u->key);
    g_free(u->settings);
    g_free(u);
}

static char *line_settings(const Line *l)
{
    if (l->transport == TRANSPORT_TCP)
        return g_strdup_printf("tcp %s", l->where);
    return g_strdup_printf("%s %d %d%c%d%s%s", transport_names[l->transport], l->baud, l->data_bits, l->parity,
                           l->stop_bits, l->rs485 ? " rs485=" : "", l->rs485 ? rs485_names[l->rs485] : "");
}

/* Two users of one port must agree on what the port uses: nothing more
 * than the transport for Modbus TCP, the framing for RTU (over TCP too),
 * and the RS485 switching on a serial line. */
static gboolean line_equal(const Line *a, const Line *b)
{
    if (a->transport != b->transport)
        return FALSE;
    if (a->transport == TRANSPORT_TCP)
        return TRUE;
    return a->baud == b->baud && a->parity == b->parity && a->data_bits == b->data_bits &&
           a->stop_bits == b->stop_bits && a->rs485 == b->rs485;
}

static void hex(GString *out, const guint8 *bytes, int len)
{
    for (int i = 0; i < len; i++)
        g_string_append_printf(out, "%s%02X", i ? " " : "", bytes[i]);
}

const char *wb_modbus_status_to_string(WbModbusStatus status)
{
    static const char *const names[] = {"ok", "timeout", "CRC error", "exception", "bad response",
                                        "port error", "skipped", "disconnected", "cancelled"};
    return (guint)status < G_N_ELEMENTS(names) ? names[status] : "unknown";
}

/* ---- the line (worker thread) --------------------------------------------- */

static void port_close(Port *p)
{
    if (p->ctx) {
        modbus_close(p->ctx); /* closes our socket too for rtu-over-tcp */
        modbus_free(p->ctx);
        p->ctx = NULL;
        p->socket_fd = -1;
    }
}

/* A blocking connect with a deadline, for rtu-over-tcp (worker thread). */
static int tcp_connect(const Line *l, gint64 timeout_us, GString *why)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(l->host, l->service, &hints, &res);
    if (rc != 0) {
        g_string_printf(why, "cannot resolve %s: %s", l->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            g_string_printf(why, "%s", g_strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        if (poll(&pfd, 1, (int)(timeout_us / 1000)) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
            err != 0) {
            g_string_printf(why, "%s", err ? g_strerror(err) : "connection timed out");
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static gboolean port_open(Port *p, GString *why)
{
    const Line *l = &p->line;
    if (l->transport == TRANSPORT_TCP) {
        p->ctx = modbus_new_tcp_pi(l->host, l->service);
        if (!p->ctx || modbus_connect(p->ctx) == -1) {
            g_string_printf(why, "%s", modbus_strerror(errno));
            if (p->ctx)
                modbus_free(p->ctx);
            p->ctx = NULL;
            return FALSE;
        }
        return TRUE;
    }
    if (l->transport == TRANSPORT_RTU_OVER_TCP) {
        int fd = tcp_connect(l, 3 * G_USEC_PER_SEC, why);
        if (fd < 0)
            return FALSE;
        /* libmodbus 3.1.6 has no RTU-over-TCP backend: an RTU context on
         * our socket (its tcflush/tcsetattr calls fail there, harmlessly) */
        p->ctx = modbus_new_rtu(l->where, l->baud, l->parity, l->data_bits, l->stop_bits);
        if (!p->ctx) {
            g_string_printf(why, "%s", modbus_strerror(errno));
            close(fd);
            return FALSE;
        }
        modbus_set_socket(p->ctx, fd);
        p->socket_fd = fd;
        return TRUE;
    }
    p->ctx = modbus_new_rtu(l->where, l->baud, l->parity, l->data_bits, l->stop_bits);
    if (!p->ctx) {
        g_string_printf(why, "%s", modbus_strerror(errno));
        return FALSE;
    }
    if (modbus_connect(p->ctx) == -1) {
        int err = errno;
        g_string_printf(why, "%s%s", modbus_strerror(err),
                        err == EBUSY ? " (another program holds it locked)" : "");
        modbus_free(p->ctx);
        p->ctx = NULL;
        return FALSE;
    }
    /* libmodbus does not lock the port: two masters on one line garble it */
    if (ioctl(modbus_get_socket(p->ctx), TIOCEXCL) == -1) {
        g_string_printf(why, "cannot lock it (TIOCEXCL): %s", g_strerror(errno));
        port_close(p);
        return FALSE;
    }
    if (l->rs485 == RS485_KERNEL && modbus_rtu_set_serial_mode(p->ctx, MODBUS_RTU_RS485) == -1) {
        g_string_printf(why, "rs485 = kernel: the driver has no RS485 mode (TIOCSRS485: %s); use rs485 = rts "
                        "or an adapter that switches by itself (rs485 = none)", g_strerror(errno));
        port_close(p);
        return FALSE;
    }
    if (l->rs485 == RS485_RTS && modbus_rtu_set_rts(p->ctx, MODBUS_RTU_RTS_UP) == -1) {
        g_string_printf(why, "rs485 = rts: %s", modbus_strerror(errno));
        port_close(p);
        return FALSE;
    }
    return TRUE;
}

/* Discards whatever is waiting on the line (a late answer). */
static void port_flush(Port *p)
{
    if (p->socket_fd >= 0) {
        guint8 junk[256];
        while (recv(p->socket_fd, junk, sizeof junk, MSG_DONTWAIT) > 0)
            ;
        return;
    }
    modbus_flush(p->ctx);
}

static gboolean is_port_failure(int err)
{
    return err == EIO || err == EBADF || err == ENXIO || err == ENODEV || err == EPIPE || err == ECONNRESET ||
           err == ENOTCONN || err == ECONNREFUSED;
}

/* Builds the request PDU (with the unit id in front, as
 * modbus_send_raw_request() wants it). */
static int build_request(const WbModbusDevice *dev, const Req *q, guint8 *raw)
{
    int n = 0;
    raw[n++] = (guint8)dev->unit_id;
    raw[n++] = (guint8)q->function;
    raw[n++] = (guint8)(q->address >> 8);
    raw[n++] = (guint8)q->address;
    switch (q->function) {
    case 5:
        raw[n++] = q->words[0] ? 0xFF : 0x00;
        raw[n++] = 0x00;
        break;
    case 6:
        raw[n++] = (guint8)(q->words[0] >> 8);
        raw[n++] = (guint8)q->words[0];
        break;
    case 15:
        raw[n++] = (guint8)(q->count >> 8);
        raw[n++] = (guint8)q->count;
        raw[n++] = (guint8)((q->count + 7) / 8);
        for (guint i = 0; i < (q->count + 7) / 8; i++) {
            guint8 b = 0;
            for (guint k = 0; k < 8 && i * 8 + k < q->count; k++)
                if (q->words[i * 8 + k])
                    b |= (guint8)(1u << k);
            raw[n++] = b;
        }
        break;
    case 16:
        raw[n++] = (guint8)(q->count >> 8);
        raw[n++] = (guint8)q->count;
        raw[n++] = (guint8)(q->count * 2);
        for (guint i = 0; i < q->count; i++) {
            raw[n++] = (guint8)(q->words[i] >> 8);
            raw[n++] = (guint8)q->words[i];
        }
        break;
    default: /* reads */
        raw[n++] = (guint8)(q->count >> 8);
        raw[n++] = (guint8)q->count;
        break;
    }
    return n;
}

/* Checks an answer against its request and takes the data; the checks
 * modbus_read_registers() makes after modbus_receive_confirmation(). */
static WbModbusStatus check_answer(Port *p, const WbModbusDevice *dev, Req *q, const guint8 *rsp, int len,
                                   const guint8 *raw, int raw_len)
{
    int off = modbus_get_header_length(p->ctx);
    int crc = p->line.transport == TRANSPORT_TCP ? 0 : 2;
    if (len < off + 2 || rsp[off - 1] != dev->unit_id)
        return WB_MODBUS_STATUS_BAD_RESPONSE;
    guint fc = rsp[off];
    if (fc == (q->function | 0x80)) {
        q->exception = rsp[off + 1];
        return WB_MODBUS_STATUS_EXCEPTION;
    }
    if (fc != q->function)
        return WB_MODBUS_STATUS_BAD_RESPONSE;
    const guint8 *data = rsp + off + 1;
    int data_len = len - off - 1 - crc;
    if (q->function <= 4) {
        gboolean bits = q->function <= 2;
        guint bytes = bits ? (q->count + 7) / 8 : q->count * 2;
        if (data_len != (int)bytes + 1 || data[0] != bytes)
            return WB_MODBUS_STATUS_BAD_RESPONSE;
        for (guint i = 0; i < q->count; i++)
            q->words[i] = bits ? (guint16)((data[1 + i / 8] >> (i % 8)) & 1)
                               : (guint16)((data[1 + 2 * i] << 8) | data[2 + 2 * i]);
        return WB_MODBUS_STATUS_OK;
    }
    /* writes echo the address and the value (5, 6) or the count (15, 16) */
    if (data_len != 4 || memcmp(data, raw + 2, 4) != 0)
        return WB_MODBUS_STATUS_BAD_RESPONSE;
    (void)raw_len;
    return WB_MODBUS_STATUS_OK;
}

/* Runs one request, with retries.  Returns FALSE when the port failed (it
 * is closed then). */
static gboolean run_request(Port *p, WbModbusDevice *dev, Req *q, WbModbusJob *job)
{
    guint8 raw[MODBUS_MAX_PDU_LENGTH + 8];
    guint8 rsp[MODBUS_MAX_ADU_LENGTH];
    int raw_len = build_request(dev, q, raw);
    if (q->function <= 4 && !q->words)
        q->words = g_new0(guint16, q->count);

    gboolean reconnected = FALSE;
    for (guint attempt = 0; attempt <= dev->retries; attempt++) {
        modbus_set_slave(p->ctx, (int)dev->unit_id);
        modbus_set_response_timeout(p->ctx, (guint32)(dev->timeout / G_USEC_PER_SEC),
                                    (guint32)(dev->timeout % G_USEC_PER_SEC));
        /* whatever is waiting is a late answer to an earlier request: it
         * must not be taken for this one's */
        port_flush(p);
        if (dev->trace) {
            g_autoptr(GString) s = g_string_new(NULL);
            hex(s, raw, raw_len);
            wb_log(dev->inst, WB_LOG_NOTICE, "%s -> %s%s", dev->label, s->str,
                   p->line.transport == TRANSPORT_TCP ? "" : " (+CRC)");
        }
        gint64 t0 = g_get_monotonic_time();
        g_mutex_lock(&p->lock);
        dev->requests++;
        g_mutex_unlock(&p->lock);
        int rc = modbus_send_raw_request(p->ctx, raw, raw_len);
        if (rc != -1)
            rc = modbus_receive_confirmation(p->ctx, rsp);
        int err = errno;
        gint64 t1 = g_get_monotonic_time();
        if (rc > 0 && dev->trace) {
            g_autoptr(GString) s = g_string_new(NULL);
            hex(s, rsp, rc);
            wb_log(dev->inst, WB_LOG_NOTICE, "%s <- %s (%.1f ms)", dev->label, s->str, (t1 - t0) / 1000.0);
        }
        if (rc == -1 && is_port_failure(err)) {
            port_close(p);
            if (p->line.transport != TRANSPORT_RTU && !reconnected) {
                /* a TCP peer closes idle connections: connect again at once,
                 * once, and send the request again */
                g_autoptr(GString) why = g_string_new(NULL);
                reconnected = TRUE;
                if (port_open(p, why)) {
                    wb_log(dev->inst, WB_LOG_INFO, "%s: %s; connected again", p->line.where, modbus_strerror(err));
                    attempt--;
                    continue;
                }
            }
            q->status = WB_MODBUS_STATUS_PORT_ERROR;
            wb_log(dev->inst, WB_LOG_ERROR, "%s failed: %s; reopening in %.3g s", p->line.where,
                   modbus_strerror(err), (double)p->reopen_delay / G_USEC_PER_SEC);
            p->next_open = t1 + p->reopen_delay;
            return FALSE;
        }
        WbModbusStatus st;
        if (rc == -1)
            st = err == ETIMEDOUT ? WB_MODBUS_STATUS_TIMEOUT : err == EMBBADCRC ? WB_MODBUS_STATUS_CRC : WB_MODBUS_STATUS_BAD_RESPONSE;
        else if (rc == 0)
            st = WB_MODBUS_STATUS_BAD_RESPONSE; /* another unit answered */
        else
            st = check_answer(p, dev, q, rsp, rc, raw, raw_len);
        if (dev->trace && rc == -1)
            wb_log(dev->inst, WB_LOG_NOTICE, "%s <- %s after %.1f ms", dev->label, modbus_strerror(err),
                   (t1 - t0) / 1000.0);
        g_mutex_lock(&p->lock);
        switch (st) {
        case WB_MODBUS_STATUS_TIMEOUT: dev->timeouts++; break;
        case WB_MODBUS_STATUS_CRC: dev->crc++; break;
        case WB_MODBUS_STATUS_EXCEPTION:
            dev->exceptions++;
            dev->by_code[q->exception < 12 ? q->exception : 0]++;
            break;
        case WB_MODBUS_STATUS_OK: break;
        default: dev->other++; break;
        }
        g_mutex_unlock(&p->lock);
        q->status = st;
        if (st == WB_MODBUS_STATUS_OK || st == WB_MODBUS_STATUS_EXCEPTION) {
            job->answered = TRUE;
            job->time = g_get_real_time();
            job->latency_sum += t1 - t0;
            job->latency_n++;
            return TRUE;
        }
        if (st == WB_MODBUS_STATUS_BAD_RESPONSE && rc > 0)
            job->answered = TRUE; /* the device answered, wrongly: it is there */
        if (st == WB_MODBUS_STATUS_TIMEOUT && p->line.transport == TRANSPORT_TCP) {
            /* Modbus TCP: a late answer would come on this connection (and
             * libmodbus does not check transaction ids on this path) */
            port_close(p);
            g_autoptr(GString) why = g_string_new(NULL);
            if (!port_open(p, why)) {
                p->next_open = g_get_monotonic_time() + p->reopen_delay;
                q->status = st;
                return FALSE;
            }
        }
        if (attempt < dev->retries)
            wb_log(dev->inst, WB_LOG_DEBUG, "%s: FC%02u %u x %u: %s, retrying", dev->label, q->function,
                   q->address, q->count, wb_modbus_status_to_string(st));
    }
    return TRUE;
}

/* ---- the worker ------------------------------------------------------------- */

static gboolean deliver(gpointer data)
{
    WbModbusJob *job = data;
    WbModbusDevice *dev = job->dev;
    if (dev->freed) /* read without the lock: only the main context sets it */
        return G_SOURCE_REMOVE;
    if (job->func)
        job->func(job, job->user_data);
    /* the device's health, under its instance: once a second, and when it
     * connects or disconnects */
    gint64 now = g_get_monotonic_time();
    if (now - dev->health_time < G_USEC_PER_SEC && dev->health_connected == (int)job->h_connected)
        return G_SOURCE_REMOVE;
    dev->health_time = now;
    dev->health_connected = job->h_connected;
    WbBatch *batch = wb_batch_new(dev->inst);
    wb_batch_set_time(batch, g_get_real_time());
    wb_batch_add_double(batch, "modbus/requests", (double)job->h_requests, NULL);
    wb_batch_add_double(batch, "modbus/timeout/errors", (double)job->h_timeouts, NULL);
    wb_batch_add_double(batch, "modbus/crc/errors", (double)job->h_crc, NULL);
    wb_batch_add_double(batch, "modbus/exception/errors", (double)job->h_exceptions, NULL);
    wb_batch_add_double(batch, "modbus/other/errors", (double)job->h_other, NULL);
    for (guint code = 0; code < G_N_ELEMENTS(job->h_by_code); code++) {
        if (!job->h_by_code[code])
            continue; /* the codes this device has answered */
        g_autofree char *name = code ? g_strdup_printf("modbus/exception-%02u/errors", code)
                                     : g_strdup("modbus/exception-other/errors");
        wb_batch_add_double(batch, name, (double)job->h_by_code[code], NULL);
    }
    if (job->latency_n)
        wb_batch_add_double(batch, "modbus/latency", (double)job->latency_sum / job->latency_n / 1e6, NULL);
    wb_batch_add_double(batch, "modbus/connected", job->h_connected ? 1 : 0, NULL);
    wb_batch_commit(batch);
    return G_SOURCE_REMOVE;
}

/* Finishes dev->current (lock held): the rest of its requests get @rest. */
static void finish_job(Port *p, WbModbusDevice *dev, WbModbusStatus rest)
{
    WbModbusJob *job = dev->current;
    for (guint i = dev->next; i < job->reqs->len; i++)
        g_array_index(job->reqs, Req, i).status = rest;
    dev->current = NULL;
    gint64 now = g_get_monotonic_time();

    gboolean timed_out = FALSE;
    for (guint i = 0; i < job->reqs->len; i++)
        timed_out |= g_array_index(job->reqs, Req, i).status == WB_MODBUS_STATUS_TIMEOUT;
    if (job->answered) {
        if (dev->disconnected)
            wb_log(dev->inst, WB_LOG_NOTICE, "%s answers again", dev->label);
        dev->disconnected = FALSE;
        dev->failures = 0;
        job->first_answer = !dev->answered_since_connect;
        dev->answered_since_connect = TRUE;
    } else if (timed_out) {
        dev->failures++;
        if (dev->disconnected) {
            dev->probe_at = now + dev->backoff;
        } else if (dev->failures >= dev->disconnect_after) {
            dev->disconnected = TRUE;
            dev->answered_since_connect = FALSE;
            dev->probe_at = now + dev->backoff;
            wb_log(dev->inst, WB_LOG_WARNING, "%s does not answer (%u polls in a row); disconnected, probing every "
                   "%.3g s", dev->label, dev->failures, (double)dev->backoff / G_USEC_PER_SEC);
        }
    }
    job->h_requests = dev->requests;
    job->h_timeouts = dev->timeouts;
    job->h_crc = dev->crc;
    job->h_exceptions = dev->exceptions;
    job->h_other = dev->other;
    memcpy(job->h_by_code, dev->by_code, sizeof job->h_by_code);
    job->h_connected = !dev->disconnected;
    g_cond_broadcast(&p->done);
    /* the callback on the main context; dropped (and the job freed) when
     * the instance has stopped */
    wb_instance_invoke(dev->inst, deliver, job, (GDestroyNotify)job_free);
}

/* Picks the next request to run (lock held): a device in turn whose
 * min-delay has passed.  Jobs that cannot run are finished here. */
static WbModbusDevice *pick(Port *p, gint64 now, gint64 *wake)
{
    guint n = p->devices->len;
    for (guint k = 0; k < n; k++) {
        WbModbusDevice *dev = g_ptr_array_index(p->devices, (p->rr + k) % n);
        while (!dev->current && !g_queue_is_empty(&dev->queue)) {
            dev->current = g_queue_pop_head(&dev->queue);
            dev->next = 0;
            if (dev->disconnected && now < dev->probe_at)
                finish_job(p, dev, WB_MODBUS_STATUS_DISCONNECTED);
            else if (!dev->current->reqs->len)
                finish_job(p, dev, WB_MODBUS_STATUS_OK);
        }
        if (!dev->current)
            continue;
        if (dev->abandon || dev->current->cancelled) {
            finish_job(p, dev, WB_MODBUS_STATUS_CANCELLED);
            continue;
        }
        if (dev->current->run_at_stop && !p->ctx && now < p->next_open) {
            /* a last write waits for the port to come back, within its time */
            *wake = MIN(*wake, p->next_open);
            continue;
        }
        if (dev->ready_at > now) {
            *wake = MIN(*wake, dev->ready_at);
            continue;
        }
        p->rr = (p->rr + k + 1) % n;
        return dev;
    }
    return NULL;
}

static gpointer worker(gpointer data)
{
    Port *p = data;
    g_autoptr(GString) why = g_string_new(NULL);
    g_mutex_lock(&p->lock);
    while (!p->stopping) {
        gint64 now = g_get_monotonic_time();
        gint64 wake = G_MAXINT64;
        WbModbusDevice *dev = pick(p, now, &wake);
        if (!dev) {
            if (wake == G_MAXINT64)
                g_cond_wait(&p->work, &p->lock);
            else
                g_cond_wait_until(&p->work, &p->lock, wake);
            continue;
        }
        WbModbusJob *job = dev->current;
        Req *q = &g_array_index(job->reqs, Req, dev->next);
        device_ref(dev);
        g_mutex_unlock(&p->lock);

        gboolean port_ok = p->ctx != NULL;
        if (!port_ok && now >= p->next_open) {
            g_string_truncate(why, 0);
            port_ok = port_open(p, why);
            if (port_ok) {
                wb_log(NULL, p->open_error ? WB_LOG_NOTICE : WB_LOG_INFO, "Modbus port %s open (%s)", p->line.where,
                       transport_names[p->line.transport]);
                g_clear_pointer(&p->open_error, g_free);
            } else {
                if (g_strcmp0(p->open_error, why->str) != 0)
                    wb_log(NULL, WB_LOG_ERROR, "cannot open Modbus port %s: %s; retrying every %.3g s", p->line.where,
                           why->str, (double)p->reopen_delay / G_USEC_PER_SEC);
                g_free(p->open_error);
                p->open_error = g_strdup(why->str);
                p->next_open = g_get_monotonic_time() + p->reopen_delay;
            }
        }
        if (port_ok)
            port_ok = run_request(p, dev, q, job);
        else
            q->status = WB_MODBUS_STATUS_PORT_ERROR;

        g_mutex_lock(&p->lock);
        dev->next++;
        dev->ready_at = g_get_monotonic_time() + dev->min_delay;
        if (!port_ok)
            finish_job(p, dev, WB_MODBUS_STATUS_PORT_ERROR);
        else if (q->status == WB_MODBUS_STATUS_TIMEOUT)
            finish_job(p, dev, WB_MODBUS_STATUS_SKIPPED); /* fail fast */
        else if (dev->next >= job->reqs->len)
            finish_job(p, dev, WB_MODBUS_STATUS_OK);
        device_unref(dev);
    }
    g_mutex_unlock(&p->lock);
    port_close(p);
    return NULL;
}

/* ---- ports (main context) ---------------------------------------------------- */

static void port_release(Port *p)
{
    if (--p->refs > 0)
        return;
    if (p->thread) {
        g_mutex_lock(&p->lock);
        p->stopping = TRUE;
        g_cond_broadcast(&p->work);
        g_mutex_unlock(&p->lock);
        g_thread_join(p->thread);
    }
    if (p->registry)
        g_hash_table_remove(p->registry, p->key);
    g_mutex_clear(&p->lock);
    g_cond_clear(&p->work);
    g_cond_clear(&p->done);
    g_ptr_array_unref(p->devices);
    g_ptr_array_unref(p->users);
    g_free(p->key);
    g_free(p->line.where);
    g_free(p->line.host);
    g_free(p->line.service);
    g_free(p->open_error);
    g_free(p);
}

/* Reads the line settings from the options; the map gives the defaults. */
static gboolean read_line(const WbConfig *cfg, const char *pre, const WbMap *map, Line *l, GError **error)
{
    g_autofree char *k_transport = g_strconcat(pre, "transport", NULL);
    g_autofree char *k_device = g_strconcat(pre, "device", NULL);
    g_autofree char *k_host = g_strconcat(pre, "host", NULL);
    g_autofree char *k_baud = g_strconcat(pre, "baud", NULL);
    g_autofree char *k_parity = g_strconcat(pre, "parity", NULL);
    g_autofree char *k_data = g_strconcat(pre, "data-bits", NULL);
    g_autofree char *k_stop = g_strconcat(pre, "stop-bits", NULL);
    g_autofree char *k_rs485 = g_strconcat(pre, "rs485", NULL);

    l->transport = MAX(wb_config_get_enum(cfg, k_transport), 0);
    l->baud = wb_config_has_key(cfg, k_baud) ? (int)wb_config_get_int(cfg, k_baud) : map->baud ? (int)map->baud : 9600;
    int parity = wb_config_get_enum(cfg, k_parity);
    l->parity = parity >= 0 ? "NEO"[parity] : map->parity ? map->parity : 'N';
    l->data_bits = wb_config_has_key(cfg, k_data) ? (int)wb_config_get_int(cfg, k_data)
                                                  : map->data_bits ? (int)map->data_bits : 8;
    l->stop_bits = wb_config_has_key(cfg, k_stop) ? (int)wb_config_get_int(cfg, k_stop)
                                                  : map->stop_bits ? (int)map->stop_bits : 1;
    l->rs485 = MAX(wb_config_get_enum(cfg, k_rs485), 0);

    if (l->transport == TRANSPORT_RTU) {
        const char *device = wb_config_get_string(cfg, k_device);
        if (!device || !*device) {
            wb_config_set_error(cfg, error, k_device, "transport = rtu needs the serial device (%s = /dev/...)",
                                k_device);
            return FALSE;
        }
        l->where = g_strdup(device);
        return TRUE;
    }
    const char *host = wb_config_get_string(cfg, k_host);
    if (!host || !*host) {
        wb_config_set_error(cfg, error, k_host, "transport = %s needs %s = HOST or HOST:PORT",
                            transport_names[l->transport], k_host);
        return FALSE;
    }
    /* HOST, HOST:PORT, an IPv6 address bare or as [ADDR]:PORT */
    g_autoptr(GError) parse_error = NULL;
    g_autoptr(GSocketConnectable) address = g_network_address_parse(host, 502, &parse_error);
    if (!address || g_network_address_get_port(G_NETWORK_ADDRESS(address)) == 0) {
        wb_config_set_error(cfg, error, k_host, "expected HOST or HOST:PORT with a port 1..65535, got \"%s\"%s%s",
                            host, parse_error ? ": " : "", parse_error ? parse_error->message : "");
        return FALSE;
    }
    l->host = g_strdup(g_network_address_get_hostname(G_NETWORK_ADDRESS(address)));
    l->service = g_strdup_printf("%u", g_network_address_get_port(G_NETWORK_ADDRESS(address)));
    l->where = g_strdup_printf(strchr(l->host, ':') ? "[%s]:%s" : "%s:%s", l->host, l->service);
    l->rs485 = RS485_NONE; /* no serial device to switch */
    return TRUE;
}

static char *port_key(const Line *l)
{
    if (l->transport != TRANSPORT_RTU)
        return g_ascii_strdown(l->where, -1);
    char *real = realpath(l->where, NULL);
    if (!real)
        return g_strdup(l->where); /* not there (yet): its name */
    char *key = g_strdup(real);
    free(real);
    return key;
}

static void device_cleanup(gpointer data)
{
    WbModbusDevice *dev = data;
    dev->cleanup = NULL;
    wb_modbus_device_free(dev);
}

WbModbusDevice *wb_modbus_device_new(WbInstance *instance, const char *prefix, WbMap *map, GError **error)
{
    g_return_val_if_fail(instance != NULL && map != NULL, NULL);
    const char *pre = prefix ? prefix : "";
    const WbConfig *cfg = wb_instance_get_config(instance);
    Line line = {0};
    if (!read_line(cfg, pre, map, &line, error)) {
        g_free(line.where);
        g_free(line.host);
        g_free(line.service);
        return NULL;
    }
    g_autofree char *k_unit = g_strconcat(pre, "unit-id", NULL);
    g_autofree char *k_timeout = g_strconcat(pre, "timeout", NULL);
    g_autofree char *k_retries = g_strconcat(pre, "retries", NULL);
    g_autofree char *k_disc = g_strconcat(pre, "disconnect-after", NULL);
    g_autofree char *k_backoff = g_strconcat(pre, "backoff", NULL);
    g_autofree char *k_trace = g_strconcat(pre, "trace", NULL);
    g_autofree char *k_reopen = g_strconcat(pre, "reopen-delay", NULL);
    g_autofree char *k_min_delay = g_strconcat(pre, "min-delay", NULL);

    WbModbusDevice *dev = g_new0(WbModbusDevice, 1);
    dev->ref = 1;
    dev->inst = wb_instance_ref(instance); /* the worker logs and hands results to it */
    dev->map = wb_map_ref(map);
    dev->unit_id = wb_config_has_key(cfg, k_unit) ? (guint)wb_config_get_int(cfg, k_unit) : map->default_unit_id;
    dev->timeout = wb_config_get_duration(cfg, k_timeout);
    dev->retries = (guint)wb_config_get_int(cfg, k_retries);
    dev->disconnect_after = (guint)wb_config_get_int(cfg, k_disc);
    dev->backoff = wb_config_get_duration(cfg, k_backoff);
    dev->trace = wb_config_get_bool(cfg, k_trace);
    dev->min_delay = wb_config_has_key(cfg, k_min_delay) ? wb_config_get_duration(cfg, k_min_delay) : map->min_delay_us;
    dev->label = g_strdup_printf("unit %u on %s", dev->unit_id, line.where);
    dev->health_connected = -1;
    g_queue_init(&dev->queue);
    if ((dev->unit_id == 0 || dev->unit_id > 247) && line.transport != TRANSPORT_TCP) {
        wb_config_set_error(cfg, error, k_unit, "%s", dev->unit_id ? "expected 1..247 on a serial line"
                                                                   : "unit id 0 is the broadcast address, which "
                                                                     "never answers");
        g_free(line.where);
        g_free(line.host);
        g_free(line.service);
        device_unref(dev);
        return NULL;
    }

    GHashTable *registry = wb_daemon_get_ports(instance->daemon);
    g_autofree char *key = port_key(&line);
    Port *p = g_hash_table_lookup(registry, key);
    PortUser *user = g_new0(PortUser, 1);
    user->instance = g_strdup(wb_instance_get_name(instance));
    user->file = g_strdup(wb_config_get_file(cfg));
    user->key = g_strconcat(pre, line.transport == TRANSPORT_RTU ? "device" : "host", NULL);
    user->line = wb_config_get_key_line(cfg, user->key);
    user->dev = dev;
    user->wants = line;
    user->wants.where = user->wants.host = user->wants.service = NULL;
    user->settings = line_settings(&line);
    if (!p) {
        p = g_new0(Port, 1);
        p->daemon = instance->daemon;
        p->registry = registry;
        p->key = g_steal_pointer(&key);
        p->line = line;
        p->socket_fd = -1;
        p->users = g_ptr_array_new_with_free_func(user_free);
        p->devices = g_ptr_array_new();
        p->reopen_delay = wb_config_get_duration(cfg, k_reopen);
        g_mutex_init(&p->lock);
        g_cond_init(&p->work);
        g_cond_init(&p->done);
        g_hash_table_insert(registry, p->key, p);
    } else {
        if (!line_equal(&p->line, &line))
            p->conflict = TRUE;
        p->reopen_delay = MIN(p->reopen_delay, wb_config_get_duration(cfg, k_reopen));
        g_free(line.where);
        g_free(line.host);
        g_free(line.service);
    }
    g_ptr_array_add(p->users, user);
    p->refs++;
    dev->port = p;
    g_mutex_lock(&p->lock);
    g_ptr_array_add(p->devices, dev);
    g_mutex_unlock(&p->lock);
    dev->cleanup = wb_instance_add_cleanup(instance, device_cleanup, dev);
    return dev;
}

void wb_modbus_device_free(WbModbusDevice *dev)
{
    if (!dev)
        return;
    if (dev->cleanup)
        wb_instance_remove_cleanup(dev->inst, dev->cleanup);
    dev->cleanup = NULL;
    Port *p = dev->port;
    g_mutex_lock(&p->lock);
    dev->freed = TRUE;
    /* queued jobs go, except those that must run at stop */
    gint64 budget = 0;
    for (GList *l = dev->queue.head; l;) {
        GList *next = l->next;
        WbModbusJob *job = l->data;
        if (!job->run_at_stop) {
            g_queue_delete_link(&dev->queue, l);
            job_free(job);
        } else {
            budget += (gint64)job->reqs->len * ((gint64)(dev->retries + 1) * dev->timeout + dev->min_delay);
        }
        l = next;
    }
    /* the job on the line: nobody wants its answer, unless it must run at
     * stop; it ends after the request in progress (a reload frees devices
     * while the main loop runs for the others: no waiting out a whole poll) */
    if (dev->current && !dev->current->run_at_stop)
        dev->current->cancelled = TRUE;
    else if (dev->current)
        budget += (gint64)dev->current->reqs->len * ((gint64)(dev->retries + 1) * dev->timeout + dev->min_delay);
    gint64 deadline = g_get_monotonic_time() + budget + p->reopen_delay + G_USEC_PER_SEC;
    if (dev->current || !g_queue_is_empty(&dev->queue)) {
        if (!p->thread)
            p->thread = g_thread_new("wb-modbus-port", worker, p);
        g_cond_broadcast(&p->work);
    }
    while ((dev->current || !g_queue_is_empty(&dev->queue)) && g_get_monotonic_time() < deadline)
        g_cond_wait_until(&p->done, &p->lock, deadline);
    /* past the deadline: whatever is left is dropped, and the job on the
     * line ends after its request in progress (the worker must be done
     * with the device before it leaves the port) */
    while (!g_queue_is_empty(&dev->queue))
        job_free(g_queue_pop_head(&dev->queue));
    if (dev->current) {
        dev->abandon = TRUE;
        g_cond_broadcast(&p->work);
        while (dev->current)
            g_cond_wait(&p->done, &p->lock);
    }
    if (dev->requests)
        wb_log(dev->inst, WB_LOG_NOTICE, "%s: %" G_GUINT64_FORMAT " requests, %" G_GUINT64_FORMAT " timeouts, %"
               G_GUINT64_FORMAT " CRC errors, %" G_GUINT64_FORMAT " exceptions, %" G_GUINT64_FORMAT " others",
               dev->label, dev->requests, dev->timeouts, dev->crc, dev->exceptions, dev->other);
    g_ptr_array_remove(p->devices, dev);
    p->rr = 0;
    g_mutex_unlock(&p->lock);
    /* its say in the port's settings goes with it */
    for (guint i = 0; i < p->users->len; i++)
        if (((PortUser *)g_ptr_array_index(p->users, i))->dev == dev)
            g_ptr_array_remove_index(p->users, i--);
    p->conflict = FALSE;
    for (guint i = 1; i < p->users->len; i++)
        p->conflict |= !line_equal(&((PortUser *)g_ptr_array_index(p->users, 0))->wants,
                                   &((PortUser *)g_ptr_array_index(p->users, i))->wants);
    port_release(p);
    device_unref(dev);
}

gboolean wb_modbus_device_is_connected(const WbModbusDevice *dev)
{
    g_return_val_if_fail(dev != NULL, FALSE);
    return !g_atomic_int_get(&dev->disconnected);
}

const char *wb_modbus_device_get_label(const WbModbusDevice *dev)
{
    g_return_val_if_fail(dev != NULL, NULL);
    return dev->label;
}

const WbMap *wb_modbus_device_get_map(const WbModbusDevice *dev)
{
    g_return_val_if_fail(dev != NULL, NULL);
    return dev->map;
}

/* ---- jobs ---------------------------------------------------------------------- */

WbModbusJob *wb_modbus_job_new(WbModbusDevice *dev)
{
    g_return_val_if_fail(dev != NULL, NULL);
    WbModbusJob *job = g_new0(WbModbusJob, 1);
    job->dev = device_ref(dev);
    job->reqs = g_array_new(FALSE, TRUE, sizeof(Req));
    return job;
}

static guint add_request(WbModbusJob *job, guint function, guint address, guint count, const guint16 *words)
{
    Req q = {function, address, count, NULL, WB_MODBUS_STATUS_SKIPPED, 0};
    if (words)
        q.words = g_memdup2(words, count * sizeof(guint16));
    g_array_append_val(job->reqs, q);
    return job->reqs->len - 1;
}

guint wb_modbus_job_add_read(WbModbusJob *job, guint function, guint address, guint count)
{
    g_return_val_if_fail(job != NULL && !job->submitted, 0);
    g_return_val_if_fail(function >= 1 && function <= 4, 0);
    g_return_val_if_fail(count >= 1 && count <= (function <= 2 ? 2000u : 125u) && address + count <= 65536, 0);
    return add_request(job, function, address, count, NULL);
}

guint wb_modbus_job_add_read_plan(WbModbusJob *job, const WbReadPlan *plan)
{
    g_return_val_if_fail(job != NULL && plan != NULL, 0);
    guint first = job->reqs->len;
    for (guint i = 0; i < wb_read_plan_get_n_requests(plan); i++) {
        guint fc, addr, count;
        wb_read_plan_get_request(plan, i, &fc, &addr, &count);
        wb_modbus_job_add_read(job, fc, addr, count);
    }
    return first;
}

guint wb_modbus_job_add_write(WbModbusJob *job, guint function, guint address, guint count, const guint16 *words)
{
    g_return_val_if_fail(job != NULL && !job->submitted && words != NULL, 0);
    g_return_val_if_fail(((function == 5 || function == 6) && count == 1) || (function == 15 && count >= 1 && count <= 1968) ||
                         (function == 16 && count >= 1 && count <= 123), 0);
    g_return_val_if_fail(address + count <= 65536, 0);
    return add_request(job, function, address, count, words);
}

void wb_modbus_job_set_run_at_stop(WbModbusJob *job)
{
    g_return_if_fail(job != NULL);
    job->run_at_stop = TRUE;
}

void wb_modbus_job_submit(WbModbusJob *job, WbModbusJobFunc func, gpointer user_data, GDestroyNotify destroy)
{
    g_return_if_fail(job != NULL && !job->submitted);
    WbModbusDevice *dev = job->dev;
    Port *p = dev->port;
    job->submitted = TRUE;
    job->func = func;
    job->user_data = user_data;
    job->destroy = destroy;
    if (p->conflict || dev->freed) {
        /* refused at load; never reached (defensive) */
        job_free(job);
        return;
    }
    g_mutex_lock(&p->lock);
    g_queue_push_tail(&dev->queue, job);
    if (!p->thread)
        p->thread = g_thread_new("wb-modbus-port", worker, p);
    g_cond_broadcast(&p->work);
    g_mutex_unlock(&p->lock);
}

guint wb_modbus_job_get_n_requests(const WbModbusJob *job)
{
    g_return_val_if_fail(job != NULL, 0);
    return job->reqs->len;
}

WbModbusStatus wb_modbus_job_get_status(const WbModbusJob *job, guint index, guint *exception_code)
{
    g_return_val_if_fail(job != NULL && index < job->reqs->len, WB_MODBUS_STATUS_CANCELLED);
    const Req *q = &g_array_index(job->reqs, Req, index);
    if (exception_code)
        *exception_code = q->exception;
    return q->status;
}

const guint16 *wb_modbus_job_get_words(const WbModbusJob *job, guint index)
{
    g_return_val_if_fail(job != NULL && index < job->reqs->len, NULL);
    const Req *q = &g_array_index(job->reqs, Req, index);
    return q->status == WB_MODBUS_STATUS_OK ? q->words : NULL;
}

gint64 wb_modbus_job_get_time(const WbModbusJob *job)
{
    g_return_val_if_fail(job != NULL, 0);
    return job->time;
}

gboolean wb_modbus_job_is_first_answer(const WbModbusJob *job)
{
    g_return_val_if_fail(job != NULL, FALSE);
    return job->first_answer;
}

/* ---- load-time check ---------------------------------------------------------- */

GPtrArray *wb_modbus_ports_conflicts(GHashTable *registry)
{
    GPtrArray *problems = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, registry);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        Port *p = value;
        if (!p->conflict)
            continue;
        g_autoptr(GString) who = g_string_new(NULL);
        for (guint i = 0; i < p->users->len; i++) {
            const PortUser *u = g_ptr_array_index(p->users, i);
            g_string_append_printf(who, "%s[%s] in %s:%d (%s)", i ? ", " : "", u->instance, u->file, u->line,
                                   u->settings);
        }
        for (guint i = 0; i < p->users->len; i++) {
            const PortUser *u = g_ptr_array_index(p->users, i);
            g_ptr_array_add(problems, g_strdup(u->instance));
            g_ptr_array_add(problems, g_strdup_printf("%s:%d: [%s] %s: Modbus port %s is shared with different "
                                                      "line settings: %s; make them agree (both are refused)",
                                                      u->file, u->line, u->instance, u->key, p->line.where,
                                                      who->str));
        }
    }
    return problems;
}
