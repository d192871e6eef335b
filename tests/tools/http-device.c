/* http-device: an OpenDTU or a Shelly energy meter on 127.0.0.1, for the
 * tests, written with libsoup's server.  The payloads follow
 * ../shared/reference/device-apis.md (OpenDTU sections 1.2-1.7, Shelly
 * section 2), which cites the firmware sources they were taken from.
 *
 *   http-device opendtu [--era f0|f1|f2|f3] [--no-data-age-ms] [--password PW]
 *                       [--auth-read] [--pending-ms N] [--stats-ms N] [--port N]
 *                       [--websocket] [--ws-repeat-ms N] SERIAL...
 *   http-device shelly  --model em|3em|pro3em|proem [--password PW] [--port N]
 *
 * It prints "ready <port>" on stdout once it listens, then reads commands
 * on stdin, one per line, and answers each with "ok" (or "error: ..."):
 *   update SERIAL [KEY=VALUE...]  set values; new statistics now
 *   set SERIAL KEY=VALUE...       set values, statistics time unchanged
 *   age SERIAL MS                 the statistics were taken MS ago
 *   mode ok|401|429 S|garbage|truncated|missing|stall MS
 *                                 how the next data requests and limit
 *                                 commands are answered
 *   limit-result ok|failure|hold  how the next limit commands end
 *   ws-close                      close the /livedata websockets
 *   shelly KEY=VALUE...           Shelly values (see shelly_set())
 * KEYS of an inverter: AC.<field>, DC<n>.<field>, INV.<field> (OpenDTU's
 * field names, "Power DC" written Power_DC), reachable, producing,
 * limit_relative, max_power, name.
 *
 * Every request is logged on stderr: "GET <path>[?query]", and for a POST
 * "POST <path> <body as received>", so tests can assert what a client sent.
 * SIGTERM ends it with status 0. */
#include <gio/gunixinputstream.h>
#include <glib-unix.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- OpenDTU ---------------------------------------------------------------- */

static const char *const ac_fields[] = {"Power", "Voltage", "Current", "Frequency", "PowerFactor", "ReactivePower"};
static const char *const ac_units[] = {"W", "V", "A", "Hz", "", "var"};
static const int ac_digits[] = {1, 1, 2, 2, 3, 1};
static const char *const dc_fields[] = {"Power", "Voltage", "Current", "YieldDay", "YieldTotal"};
static const char *const dc_units[] = {"W", "V", "A", "Wh", "kWh"};
static const int dc_digits[] = {1, 1, 2, 0, 3};
static const char *const inv_fields[] = {"Power DC", "YieldDay", "YieldTotal", "Temperature", "Efficiency"};
static const char *const inv_units[] = {"W", "Wh", "kWh", "\302\260C", "%"};
static const int inv_digits[] = {1, 0, 3, 1, 3};
#define N_DC 2

typedef struct {
    char *serial;
    char *name;
    double ac[G_N_ELEMENTS(ac_fields)];
    double dc[N_DC][G_N_ELEMENTS(dc_fields)];
    double inv[G_N_ELEMENTS(inv_fields)];
    gboolean reachable, producing;
    double limit_relative, max_power;
    gint64 stats_time; /* g_get_real_time() of the last statistics */
    gint64 frame_stats;  /* the statistics' time the last websocket frame had */
    gint64 frame_time;   /* when that frame went out (monotonic) */
    const char *limit_status, *power_status;
    double pending_relative; /* what the pending limit command sets */
    gboolean pending_power, pending_power_value;
    guint pending_source;
} Inverter;

enum { MODE_OK, MODE_401, MODE_429, MODE_GARBAGE, MODE_TRUNCATED, MODE_MISSING, MODE_STALL };

typedef struct {
    SoupServer *server;
    GMainLoop *loop;
    gboolean shelly;
    /* OpenDTU */
    int era;               /* 0..3 */
    gboolean data_age_ms;
    char *password;
    gboolean auth_read;
    guint pending_ms;
    GPtrArray *inverters;  /* Inverter* */
    GPtrArray *sockets;    /* SoupWebsocketConnection*: /livedata clients */
    guint ws_repeat_ms;
    int mode;
    guint mode_arg;
    int limit_result;      /* 0 ok, 1 failure, 2 hold pending */
    /* Shelly */
    char *model;
    GHashTable *values;    /* Shelly: char* key -> double* value */
    GHashTable *nonces;    /* issued digest nonces */
} Device;

static Device dev;

static void inverter_init(Inverter *inv, const char *serial)
{
    /* sample 1.3b: an HM-800 with 2 DC inputs */
    static const double ac[] = {312.5, 231.4, 1.35, 50.01, 0.999, 2.1};
    static const double dc[N_DC][5] = {{162.3, 33.8, 4.8, 812, 1534.211}, {165.6, 34.1, 4.86, 818, 1537.671}};
    static const double invv[] = {327.9, 1630, 3071.882, 38.2, 95.303};
    inv->serial = g_strdup(serial);
    inv->name = g_strdup_printf("HM-800 %s", serial);
    memcpy(inv->ac, ac, sizeof ac);
    memcpy(inv->dc, dc, sizeof dc);
    memcpy(inv->inv, invv, sizeof invv);
    inv->reachable = inv->producing = TRUE;
    inv->limit_relative = 100;
    inv->max_power = 800;
    inv->stats_time = g_get_real_time();
    inv->limit_status = inv->power_status = "Unknown";
}

static Inverter *find_inverter(const char *serial)
{
    for (guint i = 0; i < dev.inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(dev.inverters, i);
        if (strcmp(inv->serial, serial) == 0)
            return inv;
    }
    return NULL;
}

static void add_value(JsonBuilder *b, const char *name, double v, const char *unit, int digits)
{
    json_builder_set_member_name(b, name);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "v");
    json_builder_add_double_value(b, v);
    json_builder_set_member_name(b, "u");
    json_builder_add_string_value(b, unit);
    json_builder_set_member_name(b, "d");
    json_builder_add_int_value(b, digits);
    json_builder_end_object(b);
}

static void add_int(JsonBuilder *b, const char *name, gint64 v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, v);
}

static void add_bool(JsonBuilder *b, const char *name, gboolean v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_boolean_value(b, v);
}

static void add_double(JsonBuilder *b, const char *name, double v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_double_value(b, v);
}

static void add_string(JsonBuilder *b, const char *name, const char *v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_string_value(b, v);
}

/* The summary every era has (src/WebApi_ws_live.cpp
 * generateInverterCommonJsonResponse). */
static void inverter_common(JsonBuilder *b, Inverter *inv)
{
    gint64 age_ms = (g_get_real_time() - inv->stats_time) / 1000;
    add_string(b, "serial", inv->serial);
    add_string(b, "name", inv->name);
    add_int(b, "order", 0);
    add_int(b, "data_age", age_ms / 1000);
    if (dev.era == 3 && dev.data_age_ms)
        add_int(b, "data_age_ms", age_ms);
    add_bool(b, "poll_enabled", TRUE);
    add_bool(b, "reachable", inv->reachable);
    add_bool(b, "producing", inv->producing);
    add_double(b, "limit_relative", inv->limit_relative);
    add_double(b, "limit_absolute", inv->max_power > 0 ? inv->limit_relative * inv->max_power / 100 : -1);
}

static void dc_channel(JsonBuilder *b, Inverter *inv, int n)
{
    json_builder_set_member_name(b, "name");
    json_builder_begin_object(b);
    add_string(b, "u", n == 0 ? "South" : "West");
    json_builder_end_object(b);
    for (guint f = 0; f < G_N_ELEMENTS(dc_fields); f++)
        add_value(b, dc_fields[f], inv->dc[n][f], dc_units[f], dc_digits[f]);
}

/* Channel data in the inverter's era (section 1.3). */
static void inverter_details(JsonBuilder *b, Inverter *inv)
{
    if (dev.era <= 1) {
        /* "0": AC with Power DC, yields, temperature, efficiency; "1".. DC */
        json_builder_set_member_name(b, "0");
        json_builder_begin_object(b);
        for (guint f = 0; f < G_N_ELEMENTS(ac_fields); f++)
            add_value(b, ac_fields[f], inv->ac[f], ac_units[f], ac_digits[f]);
        for (guint f = 0; f < G_N_ELEMENTS(inv_fields); f++)
            add_value(b, inv_fields[f], inv->inv[f], inv_units[f], inv_digits[f]);
        json_builder_end_object(b);
        for (int n = 0; n < N_DC; n++) {
            char key[8];
            g_snprintf(key, sizeof key, "%d", n + 1);
            json_builder_set_member_name(b, key);
            json_builder_begin_object(b);
            dc_channel(b, inv, n);
            json_builder_end_object(b);
        }
        return;
    }
    json_builder_set_member_name(b, "AC");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "0");
    json_builder_begin_object(b);
    for (guint f = 0; f < G_N_ELEMENTS(ac_fields); f++)
        add_value(b, ac_fields[f], inv->ac[f], ac_units[f], ac_digits[f]);
    if (dev.era == 2) /* F2: Power DC, yields and efficiency sit in AC */
        for (guint f = 0; f < G_N_ELEMENTS(inv_fields); f++)
            if (f != 3)
                add_value(b, inv_fields[f], inv->inv[f], inv_units[f], inv_digits[f]);
    json_builder_end_object(b);
    json_builder_end_object(b);
    json_builder_set_member_name(b, "DC");
    json_builder_begin_object(b);
    for (int n = 0; n < N_DC; n++) {
        char key[8];
        g_snprintf(key, sizeof key, "%d", n);
        json_builder_set_member_name(b, key);
        json_builder_begin_object(b);
        dc_channel(b, inv, n);
        json_builder_end_object(b);
    }
    json_builder_end_object(b);
    json_builder_set_member_name(b, "INV");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "0");
    json_builder_begin_object(b);
    for (guint f = 0; f < G_N_ELEMENTS(inv_fields); f++)
        if (dev.era == 3 || f == 3)
            add_value(b, inv_fields[f], inv->inv[f], inv_units[f], inv_digits[f]);
    json_builder_end_object(b);
    json_builder_end_object(b);
    add_int(b, "events", 3);
}

static char *livedata(const char *only)
{
    g_autoptr(JsonBuilder) b = json_builder_new_immutable();
    if (dev.era >= 1) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "inverters");
    }
    json_builder_begin_array(b);
    double total = 0;
    for (guint i = 0; i < dev.inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(dev.inverters, i);
        if (only && strcmp(only, inv->serial) != 0)
            continue;
        json_builder_begin_object(b);
        if (dev.mode != MODE_MISSING)
            inverter_common(b, inv);
        if (dev.era < 3 || only)
            inverter_details(b, inv);
        json_builder_end_object(b);
        total += inv->ac[0];
    }
    json_builder_end_array(b);
    if (dev.era >= 1) {
        json_builder_set_member_name(b, "total");
        json_builder_begin_object(b);
        add_value(b, "Power", total, "W", 1);
        json_builder_end_object(b);
        json_builder_set_member_name(b, "hints");
        json_builder_begin_object(b);
        add_bool(b, "time_sync", FALSE);
        add_bool(b, "radio_problem", FALSE);
        add_bool(b, "default_password", FALSE);
        json_builder_end_object(b);
        json_builder_end_object(b);
    }
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    return json_to_string(root, FALSE);
}

static void reply(SoupServerMessage *msg, guint status, const char *type, const char *body)
{
    /* libsoup names 429 "Unknown Error"; ESPAsyncWebServer says this */
    soup_server_message_set_status(msg, status, status == 429 ? "Too Many Requests" : NULL);
    if (body)
        soup_server_message_set_response(msg, type, SOUP_MEMORY_COPY, body, strlen(body));
}

static void reply_json(SoupServerMessage *msg, const char *body)
{
    reply(msg, SOUP_STATUS_OK, "application/json", body);
}

static gboolean unpause(gpointer data)
{
    SoupServerMessage *msg = data;
    soup_server_message_unpause(msg);
    g_object_unref(msg);
    return G_SOURCE_REMOVE;
}

/* A POST's form, decoded as the firmware reads it; its raw text in @text. */
static GHashTable *post_form(SoupServerMessage *msg, char **text)
{
    SoupMessageBody *body = soup_server_message_get_request_body(msg);
    g_autoptr(GBytes) bytes = soup_message_body_flatten(body);
    *text = g_strndup(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes));
    return soup_form_decode(*text);
}

static void log_request(SoupServerMessage *msg)
{
    GUri *uri = soup_server_message_get_uri(msg);
    const char *query = g_uri_get_query(uri);
    const char *method = soup_server_message_get_method(msg);
    if (strcmp(method, "POST") == 0) {
        g_autofree char *text = NULL;
        g_autoptr(GHashTable) form = post_form(msg, &text);
        const char *data = g_hash_table_lookup(form, "data");
        g_printerr("POST %s %s%s\n", g_uri_get_path(uri), data ? "data=" : "", data ? data : text);
    } else {
        g_printerr("%s %s%s%s\n", method, g_uri_get_path(uri), query ? "?" : "", query ? query : "");
    }
}

static gboolean misbehave(SoupServerMessage *msg);

static void on_livedata(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                        gpointer user_data)
{
    (void)server, (void)path, (void)user_data;
    log_request(msg);
    if (misbehave(msg))
        return;
    const char *only = query ? g_hash_table_lookup(query, "inv") : NULL;
    g_autofree char *body = livedata(only);
    if (dev.mode == MODE_TRUNCATED)
        body[strlen(body) / 2] = '\0';
    reply_json(msg, body);
}

/* The failure modes of the data endpoints: TRUE when @msg is answered
 * (or will be, after a stall) by one. */
static gboolean misbehave(SoupServerMessage *msg)
{
    switch (dev.mode) {
    case MODE_401:
        reply(msg, SOUP_STATUS_UNAUTHORIZED, "text/plain", "");
        return TRUE;
    case MODE_429: {
        char s[16];
        g_snprintf(s, sizeof s, "%u", dev.mode_arg);
        soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Retry-After", s);
        reply(msg, 429, "text/plain", "Too Many Requests");
        return TRUE;
    }
    case MODE_GARBAGE:
        reply(msg, SOUP_STATUS_OK, "application/json", "<html><body>Guru Meditation Error</body></html>");
        return TRUE;
    case MODE_STALL:
        /* the answer is made now and sent when the stall ends */
        soup_server_message_pause(msg);
        g_timeout_add(dev.mode_arg, unpause, g_object_ref(msg));
        return FALSE;
    default:
        return FALSE;
    }
}

/* Logs a POST and returns its form's "data" member as a JSON object
 * (section 1.2), or answers with the firmware's warning. */
static JsonObject *post_data(SoupServerMessage *msg, JsonParser *parser)
{
    log_request(msg);
    g_autofree char *text = NULL;
    g_autoptr(GHashTable) form = post_form(msg, &text);
    const char *data = g_hash_table_lookup(form, "data");
    if (!data) {
        reply_json(msg, "{\"type\":\"warning\",\"message\":\"No values found!\",\"code\":1002}");
        return NULL;
    }
    if (!json_parser_load_from_data(parser, data, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        reply_json(msg, "{\"type\":\"warning\",\"message\":\"Failed to parse data!\",\"code\":1004}");
        return NULL;
    }
    return json_node_get_object(json_parser_get_root(parser));
}

static gboolean member_is(JsonObject *o, const char *name, GType type)
{
    JsonNode *n = json_object_get_member(o, name);
    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type;
}

static gboolean finish_pending(gpointer data)
{
    Inverter *inv = data;
    inv->pending_source = 0;
    if (strcmp(inv->limit_status, "Pending") == 0) {
        if (dev.limit_result == 1) {
            inv->limit_status = "Failure";
        } else {
            inv->limit_status = "Ok";
            inv->limit_relative = inv->pending_relative;
        }
    }
    if (strcmp(inv->power_status, "Pending") == 0) {
        inv->power_status = "Ok";
        if (inv->pending_power)
            inv->producing = inv->pending_power_value;
    }
    return G_SOURCE_REMOVE;
}

/* "Settings saved!": the command is queued to the radio and ends after
 * pending-ms (unless @finish is FALSE: it stays Pending). */
static void queued(SoupServerMessage *msg, Inverter *inv, gboolean finish)
{
    if (finish) {
        if (inv->pending_source)
            g_source_remove(inv->pending_source);
        inv->pending_source = g_timeout_add(dev.pending_ms, finish_pending, inv);
    }
    reply_json(msg, "{\"type\":\"success\",\"message\":\"Settings saved!\",\"code\":1001}");
}

static const char *const values_missing = "{\"type\":\"warning\",\"message\":\"Values are missing!\",\"code\":1005}";

/* POST /api/limit/config (section 1.5), firmware from v25.9.11: types 0-3. */
static void on_limit_config(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                            gpointer user_data)
{
    (void)server, (void)path, (void)query, (void)user_data;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *o = post_data(msg, parser);
    if (!o)
        return;
    if (!member_is(o, "serial", G_TYPE_STRING) || !json_object_has_member(o, "limit_type") ||
        !json_object_has_member(o, "limit_value") || member_is(o, "limit_value", G_TYPE_STRING) ||
        !member_is(o, "limit_type", G_TYPE_INT64)) {
        reply_json(msg, values_missing);
        return;
    }
    gint64 type = json_object_get_int_member(o, "limit_type");
    double value = json_object_get_double_member(o, "limit_value");
    Inverter *inv = find_inverter(json_object_get_string_member(o, "serial"));
    if (value > 2250 || value < 0) {
        reply_json(msg, "{\"type\":\"warning\",\"message\":\"Limit must between 0 and 2250!\",\"code\":5002,"
                        "\"param\":{\"max\":2250}}");
        return;
    }
    if (type < 0 || type > 3) {
        reply_json(msg, "{\"type\":\"warning\",\"message\":\"Invalid type specified (0,1,2,3)!\",\"code\":5003}");
        return;
    }
    if (!inv) {
        reply_json(msg, "{\"type\":\"warning\",\"message\":\"Invalid inverter specified!\",\"code\":5004}");
        return;
    }
    if (misbehave(msg))
        return;
    inv->limit_status = "Pending";
    inv->pending_relative = (type & 1) ? value : value * 100 / inv->max_power;
    queued(msg, inv, dev.limit_result != 2);
}

/* POST /api/power/config (section 1.7), strict types (v24.9.21 on). */
static void on_power_config(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                            gpointer user_data)
{
    (void)server, (void)path, (void)query, (void)user_data;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *o = post_data(msg, parser);
    if (!o)
        return;
    gboolean has_power = json_object_has_member(o, "power"), has_restart = json_object_has_member(o, "restart");
    if (!member_is(o, "serial", G_TYPE_STRING) || (!has_power && !has_restart) ||
        (has_power && !member_is(o, "power", G_TYPE_BOOLEAN)) ||
        (has_restart && !member_is(o, "restart", G_TYPE_BOOLEAN))) {
        reply_json(msg, values_missing);
        return;
    }
    Inverter *inv = find_inverter(json_object_get_string_member(o, "serial"));
    if (!inv) {
        reply_json(msg, "{\"type\":\"warning\",\"message\":\"Invalid inverter specified!\",\"code\":11002}");
        return;
    }
    inv->power_status = "Pending";
    inv->pending_power = has_power;
    inv->pending_power_value = has_power && json_object_get_boolean_member(o, "power");
    queued(msg, inv, TRUE);
}

/* GET /api/limit/status and /api/power/status (sections 1.6, 1.7). */
static void on_status(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                      gpointer user_data)
{
    (void)server, (void)query;
    gboolean limit = GPOINTER_TO_INT(user_data);
    log_request(msg);
    g_autoptr(JsonBuilder) b = json_builder_new_immutable();
    json_builder_begin_object(b);
    for (guint i = 0; i < dev.inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(dev.inverters, i);
        json_builder_set_member_name(b, inv->serial);
        json_builder_begin_object(b);
        if (limit) {
            add_double(b, "limit_relative", inv->limit_relative);
            add_double(b, "max_power", inv->max_power);
            add_string(b, "limit_set_status", inv->limit_status);
        } else {
            add_string(b, "power_set_status", inv->power_status);
        }
        json_builder_end_object(b);
    }
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autofree char *body = json_to_string(root, FALSE);
    reply_json(msg, body);
    (void)path;
}

static gboolean basic_auth(SoupAuthDomain *domain, SoupServerMessage *msg, const char *username,
                           const char *password, gpointer user_data)
{
    (void)domain, (void)msg, (void)user_data;
    return g_strcmp0(username, "admin") == 0 && g_strcmp0(password, dev.password) == 0;
}

static gboolean set_inverter_value(Inverter *inv, const char *key, const char *value, GError **error)
{
    char *end;
    double v = g_ascii_strtod(value, &end);
    if (strcmp(key, "name") == 0) {
        g_free(inv->name);
        inv->name = g_strdup(value);
        return TRUE;
    }
    if (*end) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not a number: %s", value);
        return FALSE;
    }
    if (strcmp(key, "reachable") == 0)
        inv->reachable = v != 0;
    else if (strcmp(key, "producing") == 0)
        inv->producing = v != 0;
    else if (strcmp(key, "limit_relative") == 0)
        inv->limit_relative = v;
    else if (strcmp(key, "max_power") == 0)
        inv->max_power = v;
    else if (g_str_has_prefix(key, "AC.") || g_str_has_prefix(key, "INV.") ||
             (g_str_has_prefix(key, "DC") && g_ascii_isdigit(key[2]) && key[3] == '.')) {
        const char *field = strchr(key, '.') + 1;
        g_autofree char *name = g_strdelimit(g_strdup(field), "_", ' ');
        const char *const *fields = key[0] == 'A' ? ac_fields : key[0] == 'I' ? inv_fields : dc_fields;
        guint n = key[0] == 'A' ? G_N_ELEMENTS(ac_fields) : key[0] == 'I' ? G_N_ELEMENTS(inv_fields)
                                                                          : G_N_ELEMENTS(dc_fields);
        double *values = key[0] == 'A' ? inv->ac : key[0] == 'I' ? inv->inv : NULL;
        if (!values) {
            int ch = key[2] - '0';
            if (ch >= N_DC) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "no DC input %d", ch);
                return FALSE;
            }
            values = inv->dc[ch];
        }
        for (guint f = 0; f < n; f++) {
            if (strcmp(fields[f], name) == 0) {
                values[f] = v;
                return TRUE;
            }
        }
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "no field %s", key);
        return FALSE;
    } else {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "unknown key %s", key);
        return FALSE;
    }
    return TRUE;
}

static void push_frames(gboolean all);
static void on_ws_closed(SoupWebsocketConnection *ws, gpointer data);

static gboolean opendtu_command(char **words, GError **error)
{
    if (strcmp(words[0], "mode") == 0 && words[1]) {
        static const char *const modes[] = {"ok", "401", "429", "garbage", "truncated", "missing", "stall"};
        for (guint m = 0; m < G_N_ELEMENTS(modes); m++) {
            if (strcmp(words[1], modes[m]) == 0) {
                dev.mode = (int)m;
                dev.mode_arg = words[2] ? (guint)g_ascii_strtoull(words[2], NULL, 10) : 0;
                return TRUE;
            }
        }
    } else if (strcmp(words[0], "ws-close") == 0) {
        while (dev.sockets->len) {
            SoupWebsocketConnection *ws = g_ptr_array_steal_index(dev.sockets, 0);
            g_signal_handlers_disconnect_by_func(ws, on_ws_closed, NULL);
            soup_websocket_connection_close(ws, SOUP_WEBSOCKET_CLOSE_GOING_AWAY, "test");
            g_object_unref(ws);
        }
        return TRUE;
    } else if (strcmp(words[0], "limit-result") == 0 && words[1]) {
        dev.limit_result = strcmp(words[1], "failure") == 0 ? 1 : strcmp(words[1], "hold") == 0 ? 2 : 0;
        return TRUE;
    } else if ((strcmp(words[0], "update") == 0 || strcmp(words[0], "set") == 0 || strcmp(words[0], "age") == 0) &&
               words[1]) {
        Inverter *inv = find_inverter(words[1]);
        if (!inv) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no inverter %s", words[1]);
            return FALSE;
        }
        if (words[0][0] == 'a') {
            inv->stats_time = g_get_real_time() - (gint64)g_ascii_strtoull(words[2] ? words[2] : "0", NULL, 10) * 1000;
            return TRUE;
        }
        for (char **w = words + 2; *w; w++) {
            g_auto(GStrv) kv = g_strsplit(*w, "=", 2);
            if (!kv[1]) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "expected KEY=VALUE: %s", *w);
                return FALSE;
            }
            if (!set_inverter_value(inv, kv[0], kv[1], error))
                return FALSE;
        }
        if (words[0][0] == 'u') {
            inv->stats_time = g_get_real_time();
            if (dev.sockets->len)
                push_frames(FALSE);
        }
        return TRUE;
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "unknown command");
    return FALSE;
}

/* ---- the /livedata websocket (section 1.4) ------------------------------------------- */

/* One frame per inverter with new statistics, or whose last frame is
 * ws-repeat-ms old (10 s on the device); F3 frames carry one inverter,
 * older eras all of them. */
static void push_frames(gboolean all)
{
    gint64 now = g_get_monotonic_time();
    for (guint i = 0; i < dev.inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(dev.inverters, i);
        if (!all && inv->frame_stats == inv->stats_time && now - inv->frame_time < (gint64)dev.ws_repeat_ms * 1000)
            continue;
        inv->frame_stats = inv->stats_time;
        inv->frame_time = now;
        g_autofree char *frame = livedata(dev.era == 3 ? inv->serial : NULL);
        for (guint k = 0; k < dev.sockets->len; k++) {
            SoupWebsocketConnection *ws = g_ptr_array_index(dev.sockets, k);
            if (soup_websocket_connection_get_state(ws) == SOUP_WEBSOCKET_STATE_OPEN)
                soup_websocket_connection_send_text(ws, frame);
        }
        g_printerr("frame %s\n", dev.era == 3 ? inv->serial : "all");
        if (dev.era != 3)
            break;
    }
}

static gboolean on_frame_tick(gpointer data)
{
    (void)data;
    if (dev.sockets->len)
        push_frames(FALSE);
    return G_SOURCE_CONTINUE;
}

static void on_ws_closed(SoupWebsocketConnection *ws, gpointer data)
{
    (void)data;
    g_ptr_array_remove(dev.sockets, ws);
}

static void on_websocket(SoupServer *server, SoupServerMessage *msg, const char *path,
                         SoupWebsocketConnection *ws, gpointer user_data)
{
    (void)server, (void)msg, (void)path, (void)user_data;
    g_printerr("websocket connected\n");
    g_ptr_array_add(dev.sockets, g_object_ref(ws));
    g_signal_connect(ws, "closed", G_CALLBACK(on_ws_closed), NULL);
    push_frames(TRUE);
}

static char *digest_password(SoupAuthDomain *domain, SoupServerMessage *msg, const char *username, gpointer data)
{
    (void)msg, (void)data;
    if (strcmp(username, "admin") != 0)
        return NULL;
    return soup_auth_domain_digest_encode_password(username, soup_auth_domain_get_realm(domain), dev.password);
}

/* ---- stdin commands ------------------------------------------------------------ */

static gboolean shelly_command(char **words, GError **error);

static void on_line(GObject *source, GAsyncResult *res, gpointer user_data)
{
    GDataInputStream *in = G_DATA_INPUT_STREAM(source);
    g_autoptr(GError) error = NULL;
    g_autofree char *line = g_data_input_stream_read_line_finish(in, res, NULL, &error);
    if (!line) {
        g_main_loop_quit(dev.loop);
        return;
    }
    g_auto(GStrv) words = g_strsplit_set(g_strstrip(line), " ", -1);
    if (!words[0] || !*words[0]) {
        g_set_error(&error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "empty command");
    } else if (strcmp(words[0], "quit") == 0) {
        g_main_loop_quit(dev.loop);
        return;
    } else if (dev.shelly ? shelly_command(words, &error) : opendtu_command(words, &error)) {
        printf("ok\n");
    }
    if (error)
        printf("error: %s\n", error->message);
    fflush(stdout);
    g_data_input_stream_read_line_async(in, G_PRIORITY_DEFAULT, NULL, on_line, user_data);
}

/* The DTU polls its inverters: new statistics for the reachable ones. */
static gboolean on_stats(gpointer data)
{
    (void)data;
    for (guint i = 0; i < dev.inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(dev.inverters, i);
        if (inv->reachable)
            inv->stats_time = g_get_real_time();
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_term(gpointer data)
{
    (void)data;
    g_main_loop_quit(dev.loop);
    return G_SOURCE_REMOVE;
}

/* ---- Shelly ---------------------------------------------------------------------- */

/* The samples of section 2 (2.1a, 2.1b, 2.2), as each model answers. */
static const char *const gen1_em_status =
    "{\"time\":\"11:16\",\"unixtime\":1716110566,\"serial\":21580,\"has_update\":false,\"mac\":\"C45BBE000001\","
    "\"relays\":[{\"ison\":true,\"has_timer\":false,\"timer_started\":0,\"timer_duration\":0,\"timer_remaining\":0,"
    "\"overpower\":false,\"is_valid\":true,\"source\":\"http\"}],\"emeters\":[{\"power\":-412.37,\"reactive\":95.12,"
    "\"pf\":-0.97,\"voltage\":236.41,\"is_valid\":true,\"total\":1284533.7,\"total_returned\":2201946.4},"
    "{\"power\":0.00,\"reactive\":0.00,\"pf\":0.00,\"voltage\":236.41,\"is_valid\":true,\"total\":0.0,"
    "\"total_returned\":0.0}],\"uptime\":2226140}";
static const char *const gen1_3em_status =
    "{\"unixtime\":1709223219,\"mac\":\"3494547B0001\",\"relays\":[{\"ison\":false,\"has_timer\":false,"
    "\"timer_started\":0,\"timer_duration\":0,\"timer_remaining\":0,\"overpower\":false,\"is_valid\":true,"
    "\"source\":\"input\"}],\"emeters\":[{\"power\":-251.08,\"pf\":0.92,\"current\":1.16,\"voltage\":234.90,"
    "\"is_valid\":true,\"total\":1686297.2,\"total_returned\":428958.4},{\"power\":155.02,\"pf\":0.98,"
    "\"current\":0.66,\"voltage\":235.57,\"is_valid\":true,\"total\":878905.6,\"total_returned\":4.1},"
    "{\"power\":6.75,\"pf\":0.26,\"current\":0.11,\"voltage\":234.70,\"is_valid\":true,\"total\":206151.1,"
    "\"total_returned\":0.0}],\"total_power\":-89.31,\"emeter_n\":{\"current\":0.00,\"ixsum\":1.29,"
    "\"mismatch\":false,\"is_valid\":false},\"uptime\":325}";
static const char *const gen2_em_status =
    "{\"id\":0,\"a_current\":0.595,\"a_voltage\":225.3,\"a_act_power\":-60.2,\"a_aprt_power\":134.0,\"a_pf\":0.45,"
    "\"a_freq\":50.0,\"b_current\":1.041,\"b_voltage\":223.9,\"b_act_power\":72.8,\"b_aprt_power\":233.1,"
    "\"b_pf\":0.32,\"b_freq\":50.0,\"c_current\":2.057,\"c_voltage\":224.3,\"c_act_power\":379.9,"
    "\"c_aprt_power\":461.5,\"c_pf\":0.82,\"c_freq\":50.0,\"n_current\":null,\"total_current\":3.693,"
    "\"total_act_power\":392.5,\"total_aprt_power\":828.6,\"user_calibrated_phase\":[]}";
static const char *const gen2_emdata_status =
    "{\"id\":0,\"a_total_act_energy\":8340015.74,\"a_total_act_ret_energy\":315.58,"
    "\"b_total_act_energy\":10712136.72,\"b_total_act_ret_energy\":0.21,\"c_total_act_energy\":8628545.08,"
    "\"c_total_act_ret_energy\":17.85,\"total_act\":27680697.54,\"total_act_ret\":333.64}";
static const char *const gen2_em1_status =
    "{\"id\":%u,\"current\":1.473,\"voltage\":226.9,\"act_power\":%g,\"aprt_power\":335.0,\"pf\":0.99,"
    "\"freq\":50.0,\"calibration\":\"factory\"}";
static const char *const gen2_em1data_status = "{\"id\":%u,\"total_act_energy\":%g,\"total_act_ret_energy\":144792.28}";

static JsonNode *parse(const char *text)
{
    g_autoptr(JsonParser) p = json_parser_new();
    if (!json_parser_load_from_data(p, text, -1, NULL))
        g_error("bad sample %s", text);
    return json_node_ref(json_parser_get_root(p));
}

static gboolean shelly_gen2(void)
{
    return strcmp(dev.model, "pro3em") == 0 || strcmp(dev.model, "proem") == 0;
}

static const char *shelly_id(void)
{
    return strcmp(dev.model, "proem") == 0 ? "shellyproem50-a0b1c2d3e4f6" : "shellypro3em-a0b1c2d3e4f5";
}

/* "status", "em", "emdata", "em1.N", "em1data.N": the answers, by name */
static void shelly_init(void)
{
    dev.values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)json_node_unref);
    if (strcmp(dev.model, "em") == 0)
        g_hash_table_insert(dev.values, g_strdup("status"), parse(gen1_em_status));
    else if (strcmp(dev.model, "3em") == 0)
        g_hash_table_insert(dev.values, g_strdup("status"), parse(gen1_3em_status));
    g_hash_table_insert(dev.values, g_strdup("em"), parse(gen2_em_status));
    g_hash_table_insert(dev.values, g_strdup("emdata"), parse(gen2_emdata_status));
    for (guint n = 0; n < 3; n++) {
        g_autofree char *s = g_strdup_printf(gen2_em1_status, n, -332.2 + 100.0 * n);
        g_autofree char *d = g_strdup_printf(gen2_em1data_status, n, 1264.15 + 1000.0 * n);
        g_hash_table_insert(dev.values, g_strdup_printf("em1.%u", n), parse(s));
        g_hash_table_insert(dev.values, g_strdup_printf("em1data.%u", n), parse(d));
    }
}

/* shelly NAME.MEMBER=VALUE (status.emeters.N.MEMBER for gen1): a number or null */
static gboolean shelly_command(char **words, GError **error)
{
    if (strcmp(words[0], "mode") == 0)
        return opendtu_command(words, error);
    if (strcmp(words[0], "shelly") != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "unknown command");
        return FALSE;
    }
    for (char **w = words + 1; *w; w++) {
        g_auto(GStrv) kv = g_strsplit(*w, "=", 2);
        g_auto(GStrv) path = g_strsplit(kv[0], ".", -1);
        if (!kv[1] || !path[1]) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "expected NAME.MEMBER=VALUE: %s", *w);
            return FALSE;
        }
        guint first = g_ascii_isdigit(path[1][0]) && path[2] ? 2 : 1;
        g_autofree char *key = first == 2 ? g_strdup_printf("%s.%s", path[0], path[1]) : g_strdup(path[0]);
        JsonNode *node = g_hash_table_lookup(dev.values, key);
        for (guint i = first; node && path[i + 1]; i++) {
            if (JSON_NODE_HOLDS_OBJECT(node))
                node = json_object_get_member(json_node_get_object(node), path[i]);
            else if (JSON_NODE_HOLDS_ARRAY(node) && g_ascii_isdigit(path[i][0]) &&
                     (guint)atoi(path[i]) < json_array_get_length(json_node_get_array(node)))
                node = json_array_get_element(json_node_get_array(node), (guint)atoi(path[i]));
            else
                node = NULL;
        }
        if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no object for %s", kv[0]);
            return FALSE;
        }
        const char *member = path[g_strv_length(path) - 1];
        if (strcmp(kv[1], "null") == 0)
            json_object_set_null_member(json_node_get_object(node), member);
        else if (strcmp(kv[1], "true") == 0 || strcmp(kv[1], "false") == 0)
            json_object_set_boolean_member(json_node_get_object(node), member, kv[1][0] == 't');
        else
            json_object_set_double_member(json_node_get_object(node), member, g_ascii_strtod(kv[1], NULL));
    }
    return TRUE;
}

/* /shelly: never protected (section 2.2, Authentication) */
static void on_shelly(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                      gpointer user_data)
{
    (void)server, (void)path, (void)query, (void)user_data;
    log_request(msg);
    g_autofree char *body = NULL;
    if (!shelly_gen2())
        body = g_strdup_printf("{\"type\":\"%s\",\"mac\":\"C45BBE000001\",\"auth\":%s,"
                               "\"fw\":\"20230913-114244/v1.14.0-gcb84623\"}",
                               strcmp(dev.model, "em") == 0 ? "SHEM" : "SHEM-3", dev.password ? "true" : "false");
    else
        body = g_strdup_printf("{\"name\":null,\"id\":\"%s\",\"mac\":\"A0B1C2D3E4F5\",\"slot\":1,\"model\":\"%s\","
                               "\"gen\":2,\"fw_id\":\"20241011-114455/1.4.4-g6d2a586\",\"ver\":\"1.4.4\","
                               "\"app\":\"%s\",\"auth_en\":%s,\"auth_domain\":\"%s\"%s}",
                               shelly_id(), strcmp(dev.model, "proem") == 0 ? "SPEM-002CEBEU50" : "SPEM-003CEBEU",
                               strcmp(dev.model, "proem") == 0 ? "ProEM" : "Pro3EM", dev.password ? "true" : "false",
                               shelly_id(), strcmp(dev.model, "pro3em") == 0 ? ",\"profile\":\"triphase\"" : "");
    reply_json(msg, body);
}

/* Digest authentication as Shelly gen2 does it: RFC 7616, SHA-256, user
 * admin, realm = the device id, qop auth.  Checked against curl --digest
 * by the tests before the plugin is checked against it. */
static gboolean digest_ok(SoupServerMessage *msg)
{
    const char *auth = soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "Authorization");
    if (!auth || g_ascii_strncasecmp(auth, "Digest ", 7) != 0)
        return FALSE;
    g_autoptr(GHashTable) p = soup_header_parse_param_list(auth + 7);
    const char *user = g_hash_table_lookup(p, "username"), *realm = g_hash_table_lookup(p, "realm");
    const char *nonce = g_hash_table_lookup(p, "nonce"), *uri = g_hash_table_lookup(p, "uri");
    const char *nc = g_hash_table_lookup(p, "nc"), *cnonce = g_hash_table_lookup(p, "cnonce");
    const char *qop = g_hash_table_lookup(p, "qop"), *response = g_hash_table_lookup(p, "response");
    const char *algorithm = g_hash_table_lookup(p, "algorithm");
    GUri *target = soup_server_message_get_uri(msg);
    g_autofree char *want_uri = g_strdup_printf("%s%s%s", g_uri_get_path(target), g_uri_get_query(target) ? "?" : "",
                                                g_uri_get_query(target) ? g_uri_get_query(target) : "");
    const char *why = NULL;
    if (!user || !realm || !nonce || !uri || !nc || !cnonce || !qop || !response || !algorithm)
        why = "a parameter is missing";
    else if (strcmp(user, "admin") != 0 || strcmp(realm, shelly_id()) != 0)
        why = "user or realm";
    else if (g_ascii_strcasecmp(algorithm, "SHA-256") != 0 || strcmp(qop, "auth") != 0)
        why = "algorithm or qop";
    else if (!g_hash_table_contains(dev.nonces, nonce))
        why = "unknown nonce";
    else if (strcmp(uri, want_uri) != 0)
        why = "uri";
    if (!why) {
        g_autofree char *a1 = g_strdup_printf("admin:%s:%s", realm, dev.password);
        g_autofree char *a2 = g_strdup_printf("%s:%s", soup_server_message_get_method(msg), uri);
        g_autofree char *ha1 = g_compute_checksum_for_string(G_CHECKSUM_SHA256, a1, -1);
        g_autofree char *ha2 = g_compute_checksum_for_string(G_CHECKSUM_SHA256, a2, -1);
        g_autofree char *kd = g_strdup_printf("%s:%s:%s:%s:%s:%s", ha1, nonce, nc, cnonce, qop, ha2);
        g_autofree char *expected = g_compute_checksum_for_string(G_CHECKSUM_SHA256, kd, -1);
        if (g_ascii_strcasecmp(expected, response) != 0)
            why = "response";
    }
    g_printerr("digest %s%s\n", why ? "rejected: " : "ok", why ? why : "");
    return why == NULL;
}

static void challenge(SoupServerMessage *msg)
{
    g_autofree char *nonce = g_strdup_printf("%08x", g_random_int());
    g_hash_table_add(dev.nonces, g_strdup(nonce));
    g_autofree char *header = g_strdup_printf("Digest qop=\"auth\", realm=\"%s\", nonce=\"%s\", algorithm=SHA-256",
                                              shelly_id(), nonce);
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "WWW-Authenticate", header);
    reply(msg, SOUP_STATUS_UNAUTHORIZED, "application/json", "{\"code\":401,\"message\":\"unauthorized\"}");
}

static gboolean misbehave(SoupServerMessage *msg);

/* gen1 /status and gen2 /rpc/<Method>?id=N */
static void on_shelly_data(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                           gpointer user_data)
{
    (void)server, (void)user_data;
    log_request(msg);
    if (shelly_gen2() && dev.password && !digest_ok(msg)) {
        challenge(msg);
        return;
    }
    if (misbehave(msg))
        return;
    const char *id = query ? g_hash_table_lookup(query, "id") : NULL;
    g_autofree char *key = NULL;
    if (!shelly_gen2() && strcmp(path, "/status") == 0)
        key = g_strdup("status");
    else if (shelly_gen2() && strcmp(path, "/rpc/EM.GetStatus") == 0 && g_strcmp0(id, "0") == 0 &&
             strcmp(dev.model, "pro3em") == 0)
        key = g_strdup("em");
    else if (shelly_gen2() && strcmp(path, "/rpc/EMData.GetStatus") == 0 && g_strcmp0(id, "0") == 0 &&
             strcmp(dev.model, "pro3em") == 0)
        key = g_strdup("emdata");
    else if (shelly_gen2() && strcmp(path, "/rpc/EM1.GetStatus") == 0 && id && strcmp(dev.model, "proem") == 0)
        key = g_strdup_printf("em1.%s", id);
    else if (shelly_gen2() && strcmp(path, "/rpc/EM1Data.GetStatus") == 0 && id && strcmp(dev.model, "proem") == 0)
        key = g_strdup_printf("em1data.%s", id);
    JsonNode *node = key ? g_hash_table_lookup(dev.values, key) : NULL;
    if (!node || (strcmp(dev.model, "proem") == 0 && id && atoi(id) > 1)) {
        reply(msg, SOUP_STATUS_NOT_FOUND, "application/json", "{\"code\":-105,\"message\":\"Argument 'id' invalid\"}");
        return;
    }
    g_autofree char *body = json_to_string(node, FALSE);
    if (dev.mode == MODE_TRUNCATED)
        body[strlen(body) / 2] = '\0';
    reply_json(msg, body);
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    g_autofree char *era = NULL;
    g_autofree char *model = NULL;
    gboolean no_ms = FALSE;
    int port = 0;
    int pending_ms = 300;
    int stats_ms = 0;
    int ws_repeat_ms = 10000;
    gboolean websocket = FALSE;
    GOptionEntry entries[] = {
        {"era", 0, 0, G_OPTION_ARG_STRING, &era, "OpenDTU response era: f0, f1, f2 or f3 (default)", "ERA"},
        {"no-data-age-ms", 0, 0, G_OPTION_ARG_NONE, &no_ms, "f3 before March 2025: data_age only", NULL},
        {"password", 0, 0, G_OPTION_ARG_STRING, &dev.password, "The admin password", "PW"},
        {"auth-read", 0, 0, G_OPTION_ARG_NONE, &dev.auth_read, "Read-only access off: GETs need it too", NULL},
        {"pending-ms", 0, 0, G_OPTION_ARG_INT, &pending_ms, "How long a command stays Pending", "MS"},
        {"stats-ms", 0, 0, G_OPTION_ARG_INT, &stats_ms, "Reachable inverters get new statistics this often", "MS"},
        {"websocket", 0, 0, G_OPTION_ARG_NONE, &websocket, "Serve the /livedata websocket", NULL},
        {"ws-repeat-ms", 0, 0, G_OPTION_ARG_INT, &ws_repeat_ms, "Frames without new statistics this often", "MS"},
        {"model", 0, 0, G_OPTION_ARG_STRING, &model, "Shelly model: em, 3em, pro3em, proem", "MODEL"},
        {"port", 0, 0, G_OPTION_ARG_INT, &port, "Port to listen on (default: any free one)", "N"},
        {NULL},
    };
    g_autoptr(GOptionContext) context = g_option_context_new("opendtu SERIAL... | shelly");
    g_option_context_add_main_entries(context, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(context, &argc, &argv, &error) || argc < 2) {
        g_printerr("http-device: %s\n", error ? error->message : "opendtu or shelly?");
        return 2;
    }
    dev.shelly = strcmp(argv[1], "shelly") == 0;
    dev.era = era ? era[1] - '0' : 3;
    dev.data_age_ms = !no_ms;
    dev.pending_ms = (guint)pending_ms;
    dev.model = g_strdup(model ? model : "pro3em");
    dev.inverters = g_ptr_array_new();
    dev.sockets = g_ptr_array_new_with_free_func(g_object_unref);
    dev.ws_repeat_ms = (guint)ws_repeat_ms;
    for (int i = 2; i < argc; i++) {
        Inverter *inv = g_new0(Inverter, 1);
        inverter_init(inv, argv[i]);
        g_ptr_array_add(dev.inverters, inv);
    }
    dev.server = soup_server_new("server-header", "http-device", NULL);
    if (!dev.shelly) {
        soup_server_add_handler(dev.server, "/api/livedata/status", on_livedata, NULL, NULL);
        soup_server_add_handler(dev.server, "/api/limit/config", on_limit_config, NULL, NULL);
        soup_server_add_handler(dev.server, "/api/power/config", on_power_config, NULL, NULL);
        soup_server_add_handler(dev.server, "/api/limit/status", on_status, GINT_TO_POINTER(1), NULL);
        soup_server_add_handler(dev.server, "/api/power/status", on_status, GINT_TO_POINTER(0), NULL);
        if (websocket) {
            soup_server_add_websocket_handler(dev.server, "/livedata", NULL, NULL, on_websocket, NULL, NULL);
            g_timeout_add(100, on_frame_tick, NULL);
        }
        if (dev.password && dev.auth_read && websocket) {
            /* the websocket's own digest, realm "live websocket" (commit ebb225f6) */
            SoupAuthDomain *domain = soup_auth_domain_digest_new("realm", "live websocket", NULL);
            soup_auth_domain_digest_set_auth_callback(domain, digest_password, NULL, NULL);
            soup_auth_domain_add_path(domain, "/livedata");
            soup_server_add_auth_domain(dev.server, domain);
            g_object_unref(domain);
        }
        if (dev.password) {
            SoupAuthDomain *domain = soup_auth_domain_basic_new("realm", "Login Required", NULL);
            soup_auth_domain_basic_set_auth_callback(domain, basic_auth, NULL, NULL);
            soup_auth_domain_add_path(domain, "/api/limit/config");
            soup_auth_domain_add_path(domain, "/api/power/config");
            if (dev.auth_read) {
                soup_auth_domain_add_path(domain, "/api/livedata/status");
                soup_auth_domain_add_path(domain, "/api/limit/status");
                soup_auth_domain_add_path(domain, "/api/power/status");
            }
            soup_server_add_auth_domain(dev.server, domain);
            g_object_unref(domain);
        }
    }
    if (dev.shelly) {
        shelly_init();
        dev.nonces = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        soup_server_add_handler(dev.server, "/shelly", on_shelly, NULL, NULL);
        soup_server_add_handler(dev.server, "/status", on_shelly_data, NULL, NULL);
        soup_server_add_handler(dev.server, "/rpc", on_shelly_data, NULL, NULL);
        if (dev.password && !shelly_gen2()) { /* gen1: Basic (section 2.1) */
            SoupAuthDomain *domain = soup_auth_domain_basic_new("realm", "shelly", NULL);
            soup_auth_domain_basic_set_auth_callback(domain, basic_auth, NULL, NULL);
            soup_auth_domain_add_path(domain, "/status");
            soup_server_add_auth_domain(dev.server, domain);
            g_object_unref(domain);
        }
    }
    if (!soup_server_listen_local(dev.server, (guint)port, SOUP_SERVER_LISTEN_IPV4_ONLY, &error)) {
        g_printerr("http-device: %s\n", error->message);
        return 1;
    }
    GSList *uris = soup_server_get_uris(dev.server);
    printf("ready %d\n", g_uri_get_port(uris->data));
    fflush(stdout);
    g_slist_free_full(uris, (GDestroyNotify)g_uri_unref);

    if (stats_ms > 0)
        g_timeout_add((guint)stats_ms, on_stats, NULL);
    dev.loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, on_term, NULL);
    g_autoptr(GInputStream) stdin_stream = g_unix_input_stream_new(0, FALSE);
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(stdin_stream);
    g_data_input_stream_read_line_async(in, G_PRIORITY_DEFAULT, NULL, on_line, NULL);
    g_main_loop_run(dev.loop);
    g_main_loop_unref(dev.loop);
    /* close the listeners and clients, and let libsoup finish with them */
    soup_server_disconnect(dev.server);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_object_unref(dev.server);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    for (guint i = 0; i < dev.inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(dev.inverters, i);
        if (inv->pending_source)
            g_source_remove(inv->pending_source);
        g_free(inv->serial);
        g_free(inv->name);
        g_free(inv);
    }
    g_ptr_array_unref(dev.inverters);
    g_ptr_array_unref(dev.sockets);
    g_free(dev.model);
    g_free(dev.password);
    if (dev.values)
        g_hash_table_unref(dev.values);
    if (dev.nonces)
        g_hash_table_unref(dev.nonces);
    return 0;
}
