/* mqtt: publishes points from MQTT topics (source).
 *
 * libmosquitto driven by the GLib main loop, no extra thread: the broker's
 * name is resolved with GResolver, the socket is watched for reading (and
 * for writing only while mosquitto_want_write()), mosquitto_loop_misc() runs
 * every second for keepalives, and a dropped connection is retried with
 * back-off from a timer, resubscribing on every connect.
 *
 * Mapping, one key per point:
 *   point.<name> = <topic> [; <field>] [; scale=<x>] [; offset=<x>] [; unit=<u>] [; retained=accept]
 * <field> is a JSON member of the payload's top-level object, or a JsonPath
 * ("$.inverter.power") for nested fields; without it the payload is a plain
 * number.  One MQTT message is one batch.
 *
 * Failure rules: a payload that does not parse is logged (topic and reason,
 * rate-limited) and the last good values stay; a JSON payload that parses
 * but lacks a mapped field, or matches invalid-when, makes the points
 * invalid (the Growatt stick's {"InverterStatus": -1}); a retained message
 * is of unknown age, so its points stay invalid until a live one arrives,
 * unless the mapping says retained=accept. */
#include <wattbridge/plugin.h>

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

typedef struct {
    char *key;          /* "point.power", for errors */
    char *point;        /* relative point name */
    char *topic;        /* topic filter */
    char *field;        /* NULL: plain number */
    JsonPath *path;     /* when field starts with '$' */
    double scale;
    double offset;
    char *unit;
    gboolean accept_retained;
} Mapping;

typedef struct {
    char *field;
    JsonPath *path;
    char *value;
} Rule;

typedef struct {
    WbInstance *inst;
    struct mosquitto *mosq;
    char *host;
    int port;
    char *client_id;
    int keepalive;
    int qos;
    gint64 delay_min;
    gint64 delay_max;
    gint64 delay;
    GPtrArray *mappings;   /* Mapping* */
    GPtrArray *topics;     /* char*: unique topic filters */
    GPtrArray *rules;      /* Rule*: invalid-when */
    JsonParser *parser;

    GCancellable *cancel;  /* the pending name resolution */
    GList *addresses;      /* GInetAddress*: resolved, tried in order */
    GList *next_address;
    WbWatch *watch;
    WbTimer *misc_timer;
    WbTimer *retry_timer;
    char *last_error;      /* libmosquitto's last error log line, for the warning */
    gboolean tcp_connecting; /* the socket's non-blocking connect() is in progress */
    gboolean connected;
    gboolean stopping;
    gboolean lost_reported;
} Mqtt;

static const WbOptionSpec options[] = {
    {.name = "host", .type = WB_OPTION_STRING, .default_value = "localhost", .help = "The broker's name or address"},
    {.name = "port", .type = WB_OPTION_INT, .default_value = "1883", .min = 1, .max = 65535,
     .help = "The broker's port (8883 is usual with tls)"},
    {.name = "client-id", .type = WB_OPTION_STRING,
     .help = "The MQTT client id; default: wattbridge-<host name>-<instance>"},
    {.name = "username", .type = WB_OPTION_STRING, .help = "User name, if the broker wants one"},
    {.name = "password", .type = WB_OPTION_STRING, .flags = WB_OPTION_SECRET,
     .help = "Password (never logged); keep the file readable by root and the service user only"},
    {.name = "tls", .type = WB_OPTION_BOOL, .default_value = "false", .help = "Connect with TLS"},
    {.name = "ca-file", .type = WB_OPTION_STRING,
     .help = "tls: the CA certificate(s) to trust, PEM; default: the system's"},
    {.name = "cert-file", .type = WB_OPTION_STRING, .help = "tls: a client certificate, PEM"},
    {.name = "key-file", .type = WB_OPTION_STRING, .help = "tls: the client certificate's key, PEM"},
    {.name = "tls-insecure", .type = WB_OPTION_BOOL, .default_value = "false",
     .help = "tls: do not check that the certificate names the host (testing only)"},
    {.name = "keepalive", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 5, .max = 65535, .unit = "s",
     .help = "MQTT keepalive: the broker drops us after 1.5 x this without traffic"},
    {.name = "qos", .type = WB_OPTION_INT, .default_value = "0", .min = 0, .max = 2,
     .help = "The QoS the topics are subscribed with"},
    {.name = "reconnect-delay", .type = WB_OPTION_DURATION, .default_value = "1s", .min = 0.01, .max = 3600,
     .unit = "s", .help = "First wait before reconnecting; doubled after each failure"},
    {.name = "reconnect-delay-max", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 0.01, .max = 86400,
     .unit = "s", .help = "Longest wait between reconnection attempts"},
    {.name = "invalid-when", .type = WB_OPTION_LIST,
     .help = "field=value rules; a JSON payload that matches one makes its topic's points invalid, e.g. "
             "InverterStatus=-1 (the Growatt stick's read-failure message)"},
    {.name = "point.", .type = WB_OPTION_LIST, .flags = WB_OPTION_FAMILY,
     .help = "point.<name> = <topic> [; <field or $.json.path>] [; scale=<x>] [; offset=<x>] [; unit=<u>] "
             "[; retained=accept]: publishes <name> from the topic's payload (a plain number, or a field of "
             "a JSON object) as value * scale + offset"},
    {NULL},
};

/* ---- configuration -------------------------------------------------------- */

static void mapping_free(gpointer data)
{
    Mapping *m = data;
    g_free(m->key);
    g_free(m->point);
    g_free(m->topic);
    g_free(m->field);
    if (m->path)
        g_object_unref(m->path);
    g_free(m->unit);
    g_free(m);
}

static void rule_free(gpointer data)
{
    Rule *r = data;
    g_free(r->field);
    if (r->path)
        g_object_unref(r->path);
    g_free(r->value);
    g_free(r);
}

static JsonPath *compile_path(const WbConfig *config, const char *key, const char *expr, GError **error)
{
    g_autoptr(JsonPath) path = json_path_new();
    g_autoptr(GError) perr = NULL;
    if (!json_path_compile(path, expr, &perr)) {
        wb_config_set_error(config, error, key, "JsonPath \"%s\": %s", expr, perr->message);
        return NULL;
    }
    return g_steal_pointer(&path);
}

static gboolean parse_number(const char *text, double *out)
{
    char *end = NULL;
    double v = g_ascii_strtod(text, &end);
    if (end == text || *end || !isfinite(v))
        return FALSE;
    *out = v;
    return TRUE;
}

static Mapping *parse_mapping(const WbConfig *config, const char *key, GError **error)
{
    const char *const *items = wb_config_get_list(config, key);
    Mapping *m = g_new0(Mapping, 1);
    m->key = g_strdup(key);
    m->point = g_strdup(key + strlen("point."));
    m->scale = 1;

    if (!wb_point_name_is_valid(m->point, FALSE)) {
        wb_config_set_error(config, error, key, "\"%s\" is not a point name (levels of [A-Za-z0-9_.-] separated by '/')",
                            m->point);
        goto fail;
    }
    if (!items[0] || strchr(items[0], '=')) {
        wb_config_set_error(config, error, key, "expected <topic> first, e.g. energy/solar; OutputPower");
        goto fail;
    }
    if (mosquitto_sub_topic_check(items[0]) != MOSQ_ERR_SUCCESS) {
        wb_config_set_error(config, error, key, "\"%s\" is not an MQTT topic filter", items[0]);
        goto fail;
    }
    m->topic = g_strdup(items[0]);
    for (guint i = 1; items[i]; i++) {
        const char *item = items[i];
        const char *eq = strchr(item, '=');
        if (!eq && i == 1) {
            m->field = g_strdup(item);
            if (item[0] == '$' && !(m->path = compile_path(config, key, item, error)))
                goto fail;
            continue;
        }
        g_autofree char *name = eq ? g_strstrip(g_strndup(item, (gsize)(eq - item))) : g_strdup(item);
        const char *value = eq ? eq + 1 : "";
        while (*value == ' ')
            value++;
        if (strcmp(name, "scale") == 0 && parse_number(value, &m->scale) && m->scale != 0)
            continue;
        if (strcmp(name, "offset") == 0 && parse_number(value, &m->offset))
            continue;
        if (strcmp(name, "unit") == 0 && *value) {
            g_free(m->unit);
            m->unit = g_strdup(value);
            continue;
        }
        if (strcmp(name, "retained") == 0 && (strcmp(value, "accept") == 0 || strcmp(value, "invalid") == 0)) {
            m->accept_retained = strcmp(value, "accept") == 0;
            continue;
        }
        wb_config_set_error(config, error, key,
                            "\"%s\": expected scale=<non-zero number>, offset=<number>, unit=<text> or "
                            "retained=accept|invalid (the field, if any, comes right after the topic)",
                            item);
        goto fail;
    }
    return m;
fail:
    mapping_free(m);
    return NULL;
}

/* ---- messages ------------------------------------------------------------- */

/* The node a field names in @root, or NULL. */
static JsonNode *lookup(JsonNode *root, const char *field, JsonPath *path, JsonNode **owned)
{
    *owned = NULL;
    if (path) {
        JsonNode *result = json_path_match(path, root);
        JsonArray *arr = json_node_get_array(result);
        if (json_array_get_length(arr) == 0) {
            json_node_unref(result);
            return NULL;
        }
        *owned = result;
        return json_array_get_element(arr, 0);
    }
    if (!JSON_NODE_HOLDS_OBJECT(root))
        return NULL;
    JsonObject *obj = json_node_get_object(root);
    return json_object_has_member(obj, field) ? json_object_get_member(obj, field) : NULL;
}

/* A JSON value as a number: numbers, booleans, numeric strings. */
static gboolean node_number(JsonNode *node, double *out)
{
    if (!node || !JSON_NODE_HOLDS_VALUE(node))
        return FALSE;
    GType type = json_node_get_value_type(node);
    if (type == G_TYPE_INT64 || type == G_TYPE_DOUBLE) {
        *out = json_node_get_double(node);
        return isfinite(*out);
    }
    if (type == G_TYPE_BOOLEAN) {
        *out = json_node_get_boolean(node) ? 1 : 0;
        return TRUE;
    }
    if (type == G_TYPE_STRING) {
        g_autofree char *text = g_strstrip(g_strdup(json_node_get_string(node)));
        return parse_number(text, out);
    }
    return FALSE;
}

static gboolean rule_matches(const Rule *r, JsonNode *root)
{
    JsonNode *owned;
    JsonNode *node = lookup(root, r->field, r->path, &owned);
    gboolean match = FALSE;
    double a, b;
    if (node && JSON_NODE_HOLDS_VALUE(node)) {
        if (node_number(node, &a) && parse_number(r->value, &b))
            match = a == b;
        else if (json_node_get_value_type(node) == G_TYPE_STRING)
            match = strcmp(json_node_get_string(node), r->value) == 0;
    }
    if (owned)
        json_node_unref(owned);
    return match;
}

static char *shorten(const char *payload, int len)
{
    g_autofree char *text = g_strndup(payload, (gsize)MIN(len, 60));
    char *valid = g_utf8_make_valid(text, -1);
    return len > 60 ? g_strconcat(valid, "...", NULL) : valid;
}

static void on_message(struct mosquitto *mosq, void *user_data, const struct mosquitto_message *msg)
{
    Mqtt *q = user_data;
    const char *payload = msg->payload ? msg->payload : "";
    int len = msg->payloadlen;
    JsonNode *root = NULL;
    gboolean parsed_json = FALSE, json_failed = FALSE, invalid_rule = FALSE;
    WbBatch *batch = NULL;

    for (guint i = 0; i < q->mappings->len; i++) {
        Mapping *m = g_ptr_array_index(q->mappings, i);
        bool matches = false;
        if (mosquitto_topic_matches_sub(m->topic, msg->topic, &matches) != MOSQ_ERR_SUCCESS || !matches)
            continue;
        double value = 0;
        gboolean valid = TRUE;

        if (m->field) {
            if (!parsed_json) {
                parsed_json = TRUE;
                g_autoptr(GError) error = NULL;
                if (!g_utf8_validate(payload, len, NULL)) {
                    g_set_error_literal(&error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA, "not UTF-8");
                } else if (json_parser_load_from_data(q->parser, payload, len, &error)) {
                    root = json_parser_get_root(q->parser);
                    if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                        g_set_error_literal(&error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                                            "not a JSON object");
                }
                if (error) {
                    g_autofree char *shown = shorten(payload, len);
                    g_autofree char *rkey = g_strdup_printf("parse:%s", msg->topic);
                    wb_log_ratelimited(q->inst, WB_LOG_WARNING, rkey,
                                       "%s: ignoring a payload that does not parse (%s): \"%s\"; keeping the last "
                                       "good values", msg->topic, error->message, shown);
                    json_failed = TRUE;
                    root = NULL;
                }
                for (guint r = 0; root && r < q->rules->len; r++)
                    invalid_rule |= rule_matches(g_ptr_array_index(q->rules, r), root);
            }
            if (json_failed)
                continue; /* the last good value stays */
            JsonNode *owned = NULL;
            JsonNode *node = invalid_rule ? NULL : lookup(root, m->field, m->path, &owned);
            if (invalid_rule) {
                valid = FALSE;
            } else if (!node) {
                g_autofree char *rkey = g_strdup_printf("missing:%s:%s", msg->topic, m->field);
                wb_log_ratelimited(q->inst, WB_LOG_INFO, rkey, "%s: no field %s: %s is invalid", msg->topic,
                                   m->field, m->point);
                valid = FALSE;
            } else if (!node_number(node, &value)) {
                g_autofree char *rkey = g_strdup_printf("type:%s:%s", msg->topic, m->field);
                wb_log_ratelimited(q->inst, WB_LOG_WARNING, rkey,
                                   "%s: field %s is not a number; keeping the last good value of %s", msg->topic,
                                   m->field, m->point);
                if (owned)
                    json_node_unref(owned);
                continue;
            }
            if (owned)
                json_node_unref(owned);
        } else {
            g_autofree char *text = g_strstrip(g_strndup(payload, (gsize)len));
            if (!parse_number(text, &value)) {
                g_autofree char *shown = shorten(payload, len);
                g_autofree char *rkey = g_strdup_printf("parse:%s", msg->topic);
                wb_log_ratelimited(q->inst, WB_LOG_WARNING, rkey,
                                   "%s: ignoring a payload that is not a number: \"%s\"; keeping the last good "
                                   "value of %s", msg->topic, shown, m->point);
                continue;
            }
        }
        if (msg->retain && !m->accept_retained)
            valid = FALSE; /* of unknown age: invalid until a live message */

        if (!batch)
            batch = wb_batch_new(q->inst);
        if (valid)
            wb_batch_add_double(batch, m->point, value * m->scale + m->offset, m->unit);
        else
            wb_batch_add_invalid(batch, m->point);
    }
    if (batch)
        wb_batch_commit(batch);
}

/* ---- connection ------------------------------------------------------------ */

static void connect_begin(Mqtt *q);

static void update_watch(Mqtt *q)
{
    if (!q->watch)
        return;
    if (q->tcp_connecting)
        wb_watch_set_condition(q->watch, G_IO_OUT); /* writable: connect() finished, one way or the other */
    else
        wb_watch_set_condition(q->watch, G_IO_IN | (mosquitto_want_write(q->mosq) ? G_IO_OUT : 0));
}

static void drop_watch(Mqtt *q)
{
    wb_watch_free(q->watch);
    q->watch = NULL;
}

static gboolean try_next_address(Mqtt *q);

/* The one place a failed or lost connection is handled.  libmosquitto has
 * already closed the socket; it is only ever called by the caller of
 * mosquitto_loop_read/write/misc, after the call, so one failure is handled
 * once (on_disconnect() only records). */
static void connection_failed(Mqtt *q, const char *why)
{
    drop_watch(q);
    gboolean was_connected = q->connected;
    q->connected = FALSE;
    if (q->stopping || wb_timer_is_running(q->retry_timer) || q->cancel)
        return;
    g_autofree char *reason = q->last_error ? g_strdup_printf("%s (%s)", why, q->last_error) : g_strdup(why);
    g_clear_pointer(&q->last_error, g_free);
    /* still connecting: try the name's other addresses first (IPv6, IPv4) */
    if (!was_connected && q->next_address) {
        wb_log(q->inst, WB_LOG_DEBUG, "%s:%d: %s", q->host, q->port, reason);
        if (try_next_address(q))
            return;
    }
    if (!q->lost_reported)
        wb_log(q->inst, WB_LOG_WARNING, "%s:%d: %s; retrying in %.3g s (then backing off up to %.3g s)", q->host,
               q->port, reason, (double)q->delay / 1e6, (double)q->delay_max / 1e6);
    else
        wb_log(q->inst, WB_LOG_DEBUG, "%s:%d: %s; retrying in %.3g s", q->host, q->port, reason,
               (double)q->delay / 1e6);
    q->lost_reported = TRUE;
    wb_timer_start(q->retry_timer, (guint)(q->delay / 1000), FALSE);
    q->delay = MIN(q->delay * 2, q->delay_max);
}

static const char *rc_text(int rc)
{
    return rc == MOSQ_ERR_ERRNO ? g_strerror(errno) : mosquitto_strerror(rc);
}

static void on_socket(int fd, GIOCondition cond, gpointer user_data)
{
    Mqtt *q = user_data;
    int rc = MOSQ_ERR_SUCCESS;

    if (q->tcp_connecting) {
        /* The connect() result is ours to read: libmosquitto treats a refused
         * connection under TLS as "try again", and while a TLS handshake is
         * pending it does not ask for writability. */
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err || (cond & (G_IO_ERR | G_IO_HUP))) {
            connection_failed(q, err ? g_strerror(err) : "connection closed");
            return;
        }
        q->tcp_connecting = FALSE;
        cond |= G_IO_IN | G_IO_OUT; /* let libmosquitto start: the TLS handshake, then CONNECT */
    }
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        rc = mosquitto_loop_read(q->mosq, 10);
    if (rc == MOSQ_ERR_SUCCESS && (cond & G_IO_OUT))
        rc = mosquitto_loop_write(q->mosq, 10);
    if (rc != MOSQ_ERR_SUCCESS) {
        connection_failed(q, rc_text(rc));
        return;
    }
    if (cond & (G_IO_HUP | G_IO_ERR)) {
        /* a hang-up libmosquitto did not report (it can during TLS) */
        connection_failed(q, "the connection was closed");
        return;
    }
    update_watch(q);
}

static void on_misc(gpointer user_data)
{
    Mqtt *q = user_data;
    if (!q->watch)
        return;
    int rc = mosquitto_loop_misc(q->mosq);
    if (rc != MOSQ_ERR_SUCCESS)
        connection_failed(q, rc == MOSQ_ERR_KEEPALIVE ? "no answer from the broker within the keepalive" : rc_text(rc));
    else
        update_watch(q);
}

static void on_connect(struct mosquitto *mosq, void *user_data, int rc)
{
    Mqtt *q = user_data;
    if (rc != 0) {
        /* refused: libmosquitto closes the connection and the read that
         * brought this CONNACK fails; connection_failed() handles it */
        g_free(q->last_error);
        q->last_error = g_strdup(mosquitto_connack_string(rc));
        return;
    }
    q->connected = TRUE;
    q->next_address = NULL; /* a later failure starts again from a fresh lookup */
    q->lost_reported = FALSE;
    q->delay = q->delay_min;
    g_clear_pointer(&q->last_error, g_free);
    wb_log(q->inst, WB_LOG_NOTICE, "connected to MQTT broker %s:%d; subscribing to %u topic%s", q->host, q->port,
           q->topics->len, q->topics->len == 1 ? "" : "s");
    for (guint i = 0; i < q->topics->len; i++) {
        int src = mosquitto_subscribe(mosq, NULL, g_ptr_array_index(q->topics, i), q->qos);
        if (src != MOSQ_ERR_SUCCESS)
            wb_log(q->inst, WB_LOG_ERROR, "cannot subscribe to %s: %s", (char *)g_ptr_array_index(q->topics, i),
                   mosquitto_strerror(src));
    }
    update_watch(q);
}

static void on_disconnect(struct mosquitto *mosq, void *user_data, int rc)
{
    Mqtt *q = user_data;
    if (rc != 0 && !q->stopping)
        wb_log(q->inst, WB_LOG_DEBUG, "disconnected: %s", rc_text(rc));
}

static void on_log(struct mosquitto *mosq, void *user_data, int level, const char *text)
{
    Mqtt *q = user_data;
    if (!(level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)))
        return;
    wb_log(q->inst, WB_LOG_DEBUG, "libmosquitto: %s", text);
    if (level & MOSQ_LOG_ERR) {
        g_free(q->last_error);
        q->last_error = g_strdup(text);
    }
}

/* Connects to *next_address; FALSE when no address could even be tried. */
static gboolean try_next_address(Mqtt *q)
{
    drop_watch(q);
    while (q->next_address) {
        g_autofree char *ip = g_inet_address_to_string(q->next_address->data);
        q->next_address = q->next_address->next;
        /* A numeric address, so libmosquitto's own getaddrinfo() cannot
         * block the main loop; with tls, OpenSSL checks the certificate
         * against the configured name (see mqtt_create). */
        int rc = mosquitto_connect_async(q->mosq, ip, q->port, q->keepalive);
        if (rc != MOSQ_ERR_SUCCESS) {
            wb_log(q->inst, WB_LOG_DEBUG, "%s (%s):%d: %s", q->host, ip, q->port, rc_text(rc));
            continue;
        }
        wb_log(q->inst, WB_LOG_DEBUG, "connecting to %s (%s):%d", q->host, ip, q->port);
        q->tcp_connecting = TRUE;
        q->watch = wb_watch_new(q->inst, mosquitto_socket(q->mosq), G_IO_OUT, on_socket, q);
        update_watch(q);
        return TRUE;
    }
    return FALSE;
}

static void on_resolved(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    GList *addresses = g_resolver_lookup_by_name_finish(G_RESOLVER(source), res, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* stopped: user_data may be gone */
    Mqtt *q = user_data;
    g_clear_object(&q->cancel);
    g_resolver_free_addresses(q->addresses);
    q->addresses = q->next_address = addresses;
    if (!addresses) {
        connection_failed(q, error->message);
        return;
    }
    if (!try_next_address(q))
        connection_failed(q, "no address of the broker could be tried");
}

static void connect_begin(Mqtt *q)
{
    g_autoptr(GResolver) resolver = g_resolver_get_default();
    q->cancel = g_cancellable_new();
    g_resolver_lookup_by_name_async(resolver, q->host, q->cancel, on_resolved, q);
}

static void on_retry(gpointer user_data)
{
    connect_begin(user_data);
}

/* ---- lifecycle -------------------------------------------------------------- */

static void mqtt_free(Mqtt *q)
{
    g_resolver_free_addresses(q->addresses);
    if (q->mosq)
        mosquitto_destroy(q->mosq);
    if (q->parser)
        g_object_unref(q->parser);
    g_ptr_array_unref(q->mappings);
    g_ptr_array_unref(q->topics);
    g_ptr_array_unref(q->rules);
    g_free(q->host);
    g_free(q->client_id);
    g_free(q->last_error);
    g_free(q);
    mosquitto_lib_cleanup(); /* libmosquitto >= 2.0 counts init and cleanup itself */
}

static gboolean ssl_failed(const WbConfig *config, GError **error, const char *key, const char *what,
                           const char *file)
{
    char reason[256] = "";
    ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
    wb_config_set_error(config, error, key, "cannot %s %s: %s", what, file, reason);
    ERR_clear_error();
    return FALSE;
}

/* The TLS context, configured here entirely: we connect to the resolved
 * address, never the name (libmosquitto would resolve it with a blocking
 * getaddrinfo()), so OpenSSL checks the certificate against the configured
 * host through the context's verify parameters.  The TLS server name
 * indication then carries the address.  (libmosquitto 2.0.11's own checks
 * cannot be used with a caller's context: its verify callback rejects every
 * certificate when libmosquitto did not create a context itself.) */
static SSL_CTX *tls_context(const WbConfig *config, const char *host, GError **error)
{
    const char *ca = wb_config_get_string(config, "ca-file");
    const char *cert = wb_config_get_string(config, "cert-file");
    const char *key = wb_config_get_string(config, "key-file");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    gboolean ok = ctx != NULL;
    ok = ok && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
    if (ok && ca && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        ok = ssl_failed(config, error, "ca-file", "load the CA certificates from", ca);
    else if (ok && !ca && SSL_CTX_set_default_verify_paths(ctx) != 1)
        ok = ssl_failed(config, error, "tls", "load the system's CA certificates", "");
    if (ok && cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        ok = ssl_failed(config, error, "cert-file", "load the client certificate", cert);
    if (ok && cert && SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1)
        ok = ssl_failed(config, error, "key-file", "load the client key", key ? key : cert);
    if (ok && cert && SSL_CTX_check_private_key(ctx) != 1)
        ok = ssl_failed(config, error, "key-file", "use the client key with", cert);
    if (ok && !cert && key) {
        wb_config_set_error(config, error, "key-file", "a key without cert-file");
        ok = FALSE;
    }
    if (!ok) {
        if (error && !*error)
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED, "cannot set up TLS");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!wb_config_get_bool(config, "tls-insecure")) {
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        if (g_hostname_is_ip_address(host))
            X509_VERIFY_PARAM_set1_ip_asc(param, host);
        else
            X509_VERIFY_PARAM_set1_host(param, host, 0);
    }
    return ctx;
}

static gboolean mqtt_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    mosquitto_lib_init();
    Mqtt *q = g_new0(Mqtt, 1);
    q->inst = instance;
    q->host = g_strdup(wb_config_get_string(config, "host"));
    q->port = (int)wb_config_get_int(config, "port");
    q->keepalive = (int)(wb_config_get_duration(config, "keepalive") / G_USEC_PER_SEC);
    q->qos = (int)wb_config_get_int(config, "qos");
    q->delay_min = wb_config_get_duration(config, "reconnect-delay");
    q->delay_max = MAX(wb_config_get_duration(config, "reconnect-delay-max"), q->delay_min);
    q->delay = q->delay_min;
    q->mappings = g_ptr_array_new_with_free_func(mapping_free);
    q->topics = g_ptr_array_new_with_free_func(g_free);
    q->rules = g_ptr_array_new_with_free_func(rule_free);
    q->parser = json_parser_new_immutable();

    for (const char *const *key = wb_config_get_family(config, "point."); *key; key++) {
        Mapping *m = parse_mapping(config, *key, error);
        if (!m) {
            mqtt_free(q);
            return FALSE;
        }
        g_ptr_array_add(q->mappings, m);
        if (!g_ptr_array_find_with_equal_func(q->topics, m->topic, g_str_equal, NULL))
            g_ptr_array_add(q->topics, g_strdup(m->topic));
    }
    if (!q->mappings->len) {
        wb_config_set_error(config, error, NULL, "no point.<name> = <topic> [; <field>] mappings: nothing to publish");
        mqtt_free(q);
        return FALSE;
    }
    for (const char *const *item = wb_config_get_list(config, "invalid-when"); *item; item++) {
        const char *eq = strchr(*item, '=');
        if (!eq || eq == *item) {
            wb_config_set_error(config, error, "invalid-when", "expected field=value, got \"%s\"", *item);
            mqtt_free(q);
            return FALSE;
        }
        Rule *r = g_new0(Rule, 1);
        r->field = g_strstrip(g_strndup(*item, (gsize)(eq - *item)));
        r->value = g_strstrip(g_strdup(eq + 1));
        g_ptr_array_add(q->rules, r);
        if (r->field[0] == '$' && !(r->path = compile_path(config, "invalid-when", r->field, error))) {
            mqtt_free(q);
            return FALSE;
        }
    }

    const char *id = wb_config_get_string(config, "client-id");
    q->client_id = id ? g_strdup(id) : g_strdup_printf("wattbridge-%s-%s", g_get_host_name(), wb_instance_get_name(instance));
    q->mosq = mosquitto_new(q->client_id, true, q);
    if (!q->mosq) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_FAILED, "mosquitto_new: %s", g_strerror(errno));
        mqtt_free(q);
        return FALSE;
    }
    const char *user = wb_config_get_string(config, "username");
    const char *password = wb_config_get_string(config, "password");
    if ((user || password) && mosquitto_username_pw_set(q->mosq, user, password) != MOSQ_ERR_SUCCESS) {
        wb_config_set_error(config, error, "username", "libmosquitto refused the user name");
        mqtt_free(q);
        return FALSE;
    }
    if (wb_config_get_bool(config, "tls")) {
        SSL_CTX *ctx = tls_context(config, q->host, error);
        if (!ctx) {
            mqtt_free(q);
            return FALSE;
        }
        mosquitto_void_option(q->mosq, MOSQ_OPT_SSL_CTX, ctx); /* takes its own reference */
        mosquitto_int_option(q->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0); /* used as is */
        SSL_CTX_free(ctx);
    }
    mosquitto_connect_callback_set(q->mosq, on_connect);
    mosquitto_disconnect_callback_set(q->mosq, on_disconnect);
    mosquitto_message_callback_set(q->mosq, on_message);
    mosquitto_log_callback_set(q->mosq, on_log);
    *state = q;
    return TRUE;
}

static gboolean mqtt_start(gpointer state, GError **error)
{
    Mqtt *q = state;
    q->misc_timer = wb_timer_new(q->inst, on_misc, q);
    q->retry_timer = wb_timer_new(q->inst, on_retry, q);
    wb_timer_start(q->misc_timer, 1000, TRUE);
    connect_begin(q);
    return TRUE;
}

static void mqtt_stop(gpointer state)
{
    Mqtt *q = state;
    q->stopping = TRUE;
    if (q->cancel) {
        g_cancellable_cancel(q->cancel);
        g_clear_object(&q->cancel);
    }
    if (q->watch) {
        mosquitto_disconnect(q->mosq);
        mosquitto_loop_write(q->mosq, 1); /* the DISCONNECT packet, best effort */
    }
    drop_watch(q);
    wb_timer_free(q->misc_timer);
    wb_timer_free(q->retry_timer);
    q->misc_timer = q->retry_timer = NULL;
}

static void mqtt_destroy(gpointer state)
{
    mqtt_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = mqtt_create,
    .start = mqtt_start,
    .stop = mqtt_stop,
    .destroy = mqtt_destroy,
};

WB_PLUGIN_DEFINE("mqtt", WB_VERSION, "Publishes points from MQTT topics (plain numbers or JSON fields)",
                 "GPL-3.0-or-later", WB_ROLE_SOURCE, options, &ops)
