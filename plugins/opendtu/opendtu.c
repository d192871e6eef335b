/* opendtu: reads every Hoymiles inverter behind one OpenDTU over its web
 * API and applies power limits to them (source + actuator).
 *
 * Facts from ../shared/reference/device-apis.md section 1, which cites
 * tbnobody/OpenDTU at v26.3.30 (src/WebApi_ws_live.cpp, WebApi_limit.cpp,
 * WebApi_power.cpp) and its docs:
 *  - GET /api/livedata/status comes in four eras, told apart by the answer,
 *    never by configuration: F0 a top-level array; F1 numeric channel keys
 *    ("0" AC and inverter values, "1".. the DC inputs); F2 channel groups
 *    AC/DC/INV keyed from "0"; F3 (v24.2.12 on) a summary per inverter
 *    only, the channels from ?inv=SERIAL.  Every value is {"v","u","d"}.
 *  - data_age (s, integer division) and, from March 2025, data_age_ms say
 *    how old an inverter's statistics are.
 *  - POST /api/limit/config data={"serial","limit_type","limit_value"}
 *    with Basic auth (user admin); types 0 (W) and 1 (%) are the
 *    non-persistent ones on every firmware, the persistent ones are written
 *    to the inverter's EEPROM and never used here.  The answer only means
 *    "queued": GET /api/limit/status says Pending, Ok or Failure.
 *  - POST /api/power/config data={"serial","power":bool} or "restart":true
 *    (JSON booleans: v24.9.21 on rejects integers).
 *
 * Points, per inverter, under its serial or its alias: power, voltage,
 * current, frequency, power-factor, reactive-power (AC); dc/power (all DC
 * inputs) and dcN/{power,voltage,current,yield-today,energy-import};
 * yield-today, energy-import (yield total), temperature, efficiency, all
 * with the statistics' own time (the answer's time minus data_age);
 * reachable, producing, limit-relative, limit-absolute and data-age with
 * the poll's time.  An unreachable inverter's measurements are invalid. */
#include "../http/http-client.h"

#include <math.h>

/* Clock granularity of data_age and data_age_ms, us. */
#define AGE_S_GRANULARITY G_USEC_PER_SEC
#define AGE_MS_GRANULARITY 1000

/* OpenDTU's MAX_INVERTER_LIMIT: /api/limit/config refuses more (code 5002). */
#define OPENDTU_MAX_LIMIT 2250.0

enum { UNIT_W, UNIT_PERCENT };
static const char *const unit_names[] = {"W", "%", NULL};

enum { ERA_UNKNOWN = -1, ERA_F0, ERA_F1, ERA_F2, ERA_F3 };
static const char *const era_names[] = {
    "F0 (a top-level array)",
    "F1 (numeric channels)",
    "F2 (AC/DC/INV in the plain call)",
    "F3 (v24.2.12 on: channels per inverter with ?inv=)",
};

/* A command sent to one inverter: a limit, or power on/off/restart. */
typedef struct {
    char *point;          /* the setpoint or switch point */
    gboolean seen;
    WbPointState state;
    double value;
    double last_value;    /* power/restart: the previous valid value (edges) */
    gboolean have_last;
} Input;

typedef struct {
    struct Dtu *dtu;
    char *serial;
    char *label;          /* alias or serial: the point prefix */
    gboolean present;     /* listed in the last answer */
    gboolean announced;   /* its first appearance was logged */
    /* readings */
    int reachable;        /* -1 unknown */
    gint64 sample_time;   /* real time of the last published statistics; 0 none */
    GPtrArray *published; /* char*: measurement points ever published, to invalidate */
    double limit_relative; /* %, NAN unknown */
    double max_power;     /* W, from /api/limit/status or limit_absolute; NAN unknown */
    /* the limit actuator */
    Input *limit;         /* NULL: no limit configured */
    gboolean sending;     /* a POST in flight */
    gboolean pending;     /* our last limit is not confirmed yet */
    gint64 pending_since; /* monotonic */
    gboolean resend;      /* send even if the readback matches (the inverter restarted) */
    gboolean retry;       /* the last one failed */
    gint64 last_send;     /* monotonic */
    double sent_relative; /* %: what the pending one asks for */
    char *why_fallback;   /* NULL while the setpoint is used */
    char *clamp_note;     /* the last clamping logged */
    Input *power;
    Input *restart;
    gboolean power_sending;
} Inverter;

typedef struct Dtu {
    WbInstance *inst;
    HttpClient http;
    GHashTable *aliases;  /* serial -> alias */
    GPtrArray *inverters; /* Inverter* */
    int era;
    GPtrArray *details;   /* F3: serials still to read with ?inv= */
    /* actuator */
    int limit_unit;
    double fallback;
    double max_power;     /* W, 0: the inverter's own */
    gint64 setpoint_max_age;
    gint64 limit_timeout;
    double tolerance;     /* % */
    gboolean have_commands;
    gboolean unknown_warned;
    /* the /livedata websocket */
    gboolean use_websocket;
    gint64 ws_idle;       /* us */
    gint64 ws_retry;      /* us */
    SoupWebsocketConnection *ws;
    struct WsConnect *connecting;
    WbTimer *ws_idle_timer;
    WbTimer *ws_retry_timer;
    char *ws_failure;     /* the reason last logged */
} Dtu;

/* Where an inverter object came from, and when: the time its values are
 * dated from, and how uncertain that is (a request's round trip, a
 * frame's transit). */
typedef enum { FROM_POLL, FROM_DETAILS, FROM_FRAME } Origin;
typedef struct {
    Origin origin;
    gint64 at;          /* g_get_real_time() */
    gint64 uncertainty; /* us */
} Answer;

/* The answer HTTP just delivered (valid inside a done callback). */
static Answer http_answer(Dtu *d, Origin origin)
{
    return (Answer){origin, d->http.answered_at, MAX(0, d->http.answered_at - d->http.sent_at)};
}

static const char *const websocket_names[] = {"auto", "off", NULL};

static const WbOptionSpec options[] = {
    HTTP_CLIENT_OPTIONS,
    {.name = "websocket", .type = WB_OPTION_ENUM, .default_value = "auto", .values = websocket_names,
     .help = "auto: follow the /livedata websocket when the OpenDTU has it, polling when not; off: always poll"},
    {.name = "websocket-idle", .type = WB_OPTION_DURATION, .default_value = "25s", .min = 0.05, .max = 3600,
     .unit = "s", .help = "No frame for this long (OpenDTU sends one per inverter at least every 10 s): the "
                          "websocket is dropped and polling takes over"},
    {.name = "websocket-retry", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 0.05, .max = 86400,
     .unit = "s", .help = "How long to poll before trying the websocket again after it failed"},
    {.name = "password", .type = WB_OPTION_STRING, .flags = WB_OPTION_SECRET,
     .help = "The OpenDTU admin password: needed for limits and power commands, and for reading when "
             "read-only access is off (never logged; keep the file readable by root and the service user only)"},
    {.name = "alias.", .type = WB_OPTION_STRING, .flags = WB_OPTION_FAMILY,
     .help = "alias.<serial> = <name>: publish this inverter's points under <name> instead of its serial"},
    {.name = "limit.", .type = WB_OPTION_POINT, .flags = WB_OPTION_FAMILY | WB_OPTION_ONE_POINT,
     .help = "limit.<serial or alias> = <point>: the inverter's power limit follows this point (limit-unit), "
             "as a non-persistent limit; needs fallback-limit"},
    {.name = "limit-unit", .type = WB_OPTION_ENUM, .default_value = "W", .values = unit_names,
     .help = "The unit of the limit points and of fallback-limit: W (absolute) or % (of the inverter's nominal power)"},
    {.name = "fallback-limit", .type = WB_OPTION_DOUBLE, .min = 0, .max = 100000,
     .help = "The limit sent when a limit point is stale or invalid and when the daemon stops (limit-unit)"},
    {.name = "max-power", .type = WB_OPTION_DOUBLE, .default_value = "0", .min = 0, .max = 100000, .unit = "W",
     .help = "No limit above this is ever sent, whatever the point says (e.g. a legal feed-in cap); 0: the "
             "inverter's nominal power"},
    {.name = "setpoint-max-age", .type = WB_OPTION_DURATION, .default_value = "30s", .min = 0.05, .max = 86400,
     .unit = "s", .help = "How old a limit point may get before the fallback is sent"},
    {.name = "limit-timeout", .type = WB_OPTION_DURATION, .default_value = "30s", .min = 0.05, .max = 3600,
     .unit = "s", .help = "How long a limit may stay Pending before it is sent again"},
    {.name = "limit-tolerance", .type = WB_OPTION_DOUBLE, .default_value = "0.5", .min = 0, .max = 100, .unit = "%",
     .help = "A limit the inverter reports within this of the wanted one is not sent again"},
    {.name = "power.", .type = WB_OPTION_POINT, .flags = WB_OPTION_FAMILY | WB_OPTION_ONE_POINT,
     .help = "power.<serial or alias> = <point>: turns the inverter on (point >= 0.5) or off (< 0.5) when "
             "the point changes"},
    {.name = "restart.", .type = WB_OPTION_POINT, .flags = WB_OPTION_FAMILY | WB_OPTION_ONE_POINT,
     .help = "restart.<serial or alias> = <point>: restarts the inverter when the point goes from 0 to 1 "
             "(a restart also resets its yield of the day)"},
    {NULL},
};

/* ---- inverters ------------------------------------------------------------------------ */

static void input_free(Input *in)
{
    if (!in)
        return;
    g_free(in->point);
    g_free(in);
}

static void inverter_free(gpointer data)
{
    Inverter *inv = data;
    g_free(inv->serial);
    g_free(inv->label);
    g_ptr_array_unref(inv->published);
    g_free(inv->why_fallback);
    g_free(inv->clamp_note);
    input_free(inv->limit);
    input_free(inv->power);
    input_free(inv->restart);
    g_free(inv);
}

static Inverter *find_inverter(Dtu *d, const char *serial)
{
    for (guint i = 0; i < d->inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(d->inverters, i);
        if (strcmp(inv->serial, serial) == 0)
            return inv;
    }
    return NULL;
}

static Inverter *add_inverter(Dtu *d, const char *serial)
{
    Inverter *inv = g_new0(Inverter, 1);
    inv->dtu = d;
    inv->serial = g_strdup(serial);
    const char *alias = g_hash_table_lookup(d->aliases, serial);
    inv->label = g_strdup(alias ? alias : serial);
    inv->reachable = -1;
    inv->published = g_ptr_array_new_with_free_func(g_free);
    inv->limit_relative = NAN;
    inv->max_power = NAN;
    g_ptr_array_add(d->inverters, inv);
    return inv;
}

/* ---- statistics ------------------------------------------------------------------------ */

/* A {"v","u","d"} value in our unit: energies in kWh whatever OpenDTU
 * uses (YieldDay is in Wh, YieldTotal in kWh). */
static gboolean field_value(JsonObject *group, const char *name, double *value)
{
    JsonObject *f = json_member_object(group, name);
    if (!f || !json_member_number(f, "v", value))
        return FALSE;
    if (g_strcmp0(json_member_string(f, "u"), "Wh") == 0)
        *value /= 1000.0;
    return TRUE;
}

static void add_point(Inverter *inv, WbBatch *batch, const char *name, double value)
{
    g_autofree char *full = g_strdup_printf("%s/%s", inv->label, name);
    wb_batch_add_double(batch, full, value, NULL);
    if (!g_ptr_array_find_with_equal_func(inv->published, full, g_str_equal, NULL))
        g_ptr_array_add(inv->published, g_steal_pointer(&full));
}

typedef struct {
    const char *field;
    const char *point;
} FieldMap;

static const FieldMap ac_map[] = {
    {"Power", "power"}, {"Voltage", "voltage"}, {"Current", "current"}, {"Frequency", "frequency"},
    {"PowerFactor", "power-factor"}, {"ReactivePower", "reactive-power"},
};
static const FieldMap inverter_map[] = {
    {"Power DC", "dc/power"}, {"YieldDay", "yield-today"}, {"YieldTotal", "energy-import"},
    {"Temperature", "temperature"}, {"Efficiency", "efficiency"},
};
static const FieldMap dc_map[] = {
    {"Power", "power"}, {"Voltage", "voltage"}, {"Current", "current"}, {"YieldDay", "yield-today"},
    {"YieldTotal", "energy-import"},
};

/* The first of the groups that has @field: F2/F3 spread the inverter's
 * values over AC."0" and INV."0", F0/F1 keep them in "0". */
static gboolean find_field(JsonObject *const *groups, guint n, const char *field, double *value)
{
    for (guint g = 0; g < n; g++)
        if (groups[g] && field_value(groups[g], field, value))
            return TRUE;
    return FALSE;
}

static void add_dc_input(Inverter *inv, WbBatch *batch, JsonObject *input, guint number)
{
    for (guint f = 0; f < G_N_ELEMENTS(dc_map); f++) {
        double v;
        if (field_value(input, dc_map[f].field, &v)) {
            g_autofree char *name = g_strdup_printf("dc%u/%s", number, dc_map[f].point);
            add_point(inv, batch, name, v);
        }
    }
}

/* Publishes an inverter object's channel data (any era) as one batch with
 * the statistics' time.  Returns FALSE when it has no AC power. */
static gboolean publish_statistics(Inverter *inv, JsonObject *o, gint64 sample_time)
{
    JsonObject *ac = json_member_object(json_member_object(o, "AC"), "0");
    JsonObject *invg = json_member_object(json_member_object(o, "INV"), "0");
    JsonObject *zero = json_member_object(o, "0");
    JsonObject *const groups[] = {ac, invg, zero};
    double power;
    if (!find_field(groups, G_N_ELEMENTS(groups), "Power", &power))
        return FALSE;
    WbBatch *batch = wb_batch_new(inv->dtu->inst);
    wb_batch_set_time(batch, sample_time);
    for (guint f = 0; f < G_N_ELEMENTS(ac_map); f++) {
        double v;
        if (find_field(groups, G_N_ELEMENTS(groups), ac_map[f].field, &v))
            add_point(inv, batch, ac_map[f].point, v);
    }
    for (guint f = 0; f < G_N_ELEMENTS(inverter_map); f++) {
        double v;
        /* "Power" of "0" is AC power in F0/F1; "Power DC" is unambiguous */
        if (find_field(groups, G_N_ELEMENTS(groups), inverter_map[f].field, &v))
            add_point(inv, batch, inverter_map[f].point, v);
    }
    JsonObject *dc = json_member_object(o, "DC");
    if (dc) { /* F2/F3: DC."0".. */
        for (guint n = 0;; n++) {
            char key[12];
            g_snprintf(key, sizeof key, "%u", n);
            JsonObject *input = json_member_object(dc, key);
            if (!input)
                break;
            add_dc_input(inv, batch, input, n + 1);
        }
    } else if (zero) { /* F0/F1: "1".. at the inverter's level */
        for (guint n = 1;; n++) {
            char key[12];
            g_snprintf(key, sizeof key, "%u", n);
            JsonObject *input = json_member_object(o, key);
            if (!input)
                break;
            add_dc_input(inv, batch, input, n);
        }
    }
    wb_batch_commit(batch);
    return TRUE;
}

static void invalidate_statistics(Inverter *inv)
{
    WbBatch *batch = wb_batch_new(inv->dtu->inst);
    if (!inv->published->len) {
        /* never had a value: say so for the AC points at least */
        for (guint f = 0; f < G_N_ELEMENTS(ac_map); f++) {
            g_autofree char *full = g_strdup_printf("%s/%s", inv->label, ac_map[f].point);
            wb_batch_add_invalid(batch, full);
        }
    }
    for (guint i = 0; i < inv->published->len; i++)
        wb_batch_add_invalid(batch, g_ptr_array_index(inv->published, i));
    wb_batch_commit(batch);
}

/* The statistics' time: the answer's time minus the age OpenDTU reports,
 * and how far it can move without being a new sample (the age's clock
 * granularity plus the answer's own uncertainty). */
static gint64 sample_time(const Answer *a, JsonObject *o, gint64 *slack)
{
    double age;
    if (json_member_number(o, "data_age_ms", &age)) {
        *slack = AGE_MS_GRANULARITY + a->uncertainty;
        return a->at - (gint64)(age * 1000);
    }
    if (json_member_number(o, "data_age", &age)) {
        *slack = AGE_S_GRANULARITY + a->uncertainty;
        return a->at - (gint64)(age * G_USEC_PER_SEC);
    }
    *slack = 0;
    return a->at;
}

static gboolean is_new_sample(Inverter *inv, gint64 t, gint64 slack)
{
    return !inv->sample_time || t > inv->sample_time + slack;
}

/* reachable, producing, the limit and the data's age: every poll. */
static void publish_status(Inverter *inv, JsonObject *o, gint64 at)
{
    Dtu *d = inv->dtu;
    WbBatch *batch = wb_batch_new(d->inst);
    wb_batch_set_time(batch, at);
    g_autofree char *prefix = g_strconcat(inv->label, "/", NULL);
    int producing = json_member_bool(o, "producing");
    g_autofree char *n_reachable = g_strconcat(prefix, "reachable", NULL);
    g_autofree char *n_producing = g_strconcat(prefix, "producing", NULL);
    g_autofree char *n_rel = g_strconcat(prefix, "limit-relative", NULL);
    g_autofree char *n_abs = g_strconcat(prefix, "limit-absolute", NULL);
    g_autofree char *n_age = g_strconcat(prefix, "data-age", NULL);
    wb_batch_add_double(batch, n_reachable, inv->reachable, NULL);
    if (producing >= 0)
        wb_batch_add_double(batch, n_producing, producing, NULL);
    double v;
    if (json_member_number(o, "limit_relative", &v)) {
        inv->limit_relative = v;
        wb_batch_add_double(batch, n_rel, v, NULL);
    }
    if (json_member_number(o, "limit_absolute", &v)) {
        if (v < 0) { /* -1: the max power is not known yet */
            wb_batch_add_invalid(batch, n_abs);
        } else {
            wb_batch_add_double(batch, n_abs, v, NULL);
            if (isnan(inv->max_power) && inv->limit_relative > 0)
                inv->max_power = v * 100.0 / inv->limit_relative;
        }
    }
    if (json_member_number(o, "data_age_ms", &v))
        wb_batch_add_double(batch, n_age, v / 1000.0, NULL);
    else if (json_member_number(o, "data_age", &v))
        wb_batch_add_double(batch, n_age, v, NULL);
    wb_batch_commit(batch);
}

/* ---- the limit actuator ---------------------------------------------------------------- */

static void actuate(Inverter *inv);

static void remember(char **slot, const char *text)
{
    g_free(*slot);
    *slot = g_strdup(text);
}

/* @want (limit-unit) within the hard limits: the inverter's range,
 * max-power and OpenDTU's own; @hi gets the upper one.  FALSE when they
 * cannot be worked out yet (the inverter's nominal power is not known). */
static gboolean clamp_limit(Inverter *inv, double want, double *value, double *relative, double *hi)
{
    Dtu *d = inv->dtu;
    double nominal = inv->max_power;
    gboolean known = !isnan(nominal) && nominal > 0;
    if (d->limit_unit == UNIT_W) {
        if (!known)
            return FALSE;
        *hi = MIN(nominal, OPENDTU_MAX_LIMIT);
        if (d->max_power > 0)
            *hi = MIN(*hi, d->max_power);
    } else {
        *hi = 100;
        if (d->max_power > 0) {
            if (!known)
                return FALSE; /* the cap in % needs the nominal power */
            *hi = MIN(*hi, d->max_power * 100.0 / nominal);
        }
    }
    /* a tenth of a unit is what the web interface offers; never round up past the cap */
    *value = floor(CLAMP(want, 0, *hi) * 10 + 0.5);
    if (*value / 10 > *hi)
        *value -= 1;
    *value /= 10;
    *relative = d->limit_unit == UNIT_W ? *value * 100.0 / nominal : *value;
    return TRUE;
}

/* The limit to send now in limit-unit, clamped; FALSE when it cannot be
 * worked out yet (the inverter's nominal power is not known). */
static gboolean wanted_limit(Inverter *inv, double *value, double *relative)
{
    Dtu *d = inv->dtu;
    Input *in = inv->limit;
    const char *why = NULL;
    if (!in->seen)
        why = "not published yet";
    else if (in->state == WB_POINT_STALE)
        why = "stale";
    else if (in->state == WB_POINT_INVALID)
        why = "invalid";
    double want = why ? d->fallback : in->value;
    if (why && g_strcmp0(inv->why_fallback, why) != 0)
        wb_log(d->inst, WB_LOG_WARNING, "%s: limit point %s is %s: the fallback limit %g %s applies", inv->label,
               in->point, why, d->fallback, unit_names[d->limit_unit]);
    else if (!why && inv->why_fallback)
        wb_log(d->inst, WB_LOG_NOTICE, "%s: limit point %s is valid again (%g %s)", inv->label, in->point, in->value,
               unit_names[d->limit_unit]);
    remember(&inv->why_fallback, why);

    double hi;
    if (!clamp_limit(inv, want, value, relative, &hi))
        return FALSE;
    g_autofree char *note = NULL;
    if (*value != round(want * 10) / 10)
        note = g_strdup_printf("%g %s is outside 0..%g %s: %g %s is sent", want, unit_names[d->limit_unit], hi,
                               unit_names[d->limit_unit], *value, unit_names[d->limit_unit]);
    if (note && g_strcmp0(note, inv->clamp_note) != 0)
        wb_log(d->inst, WB_LOG_WARNING, "%s: limit %s", inv->label, note);
    remember(&inv->clamp_note, note);
    return TRUE;
}

static char *limit_body(Inverter *inv, double value)
{
    g_autoptr(JsonBuilder) b = json_builder_new_immutable();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "serial");
    json_builder_add_string_value(b, inv->serial);
    json_builder_set_member_name(b, "limit_type");
    json_builder_add_int_value(b, inv->dtu->limit_unit == UNIT_W ? 0 : 1); /* non-persistent */
    json_builder_set_member_name(b, "limit_value");
    if (value == floor(value))
        json_builder_add_int_value(b, (gint64)value);
    else
        json_builder_add_double_value(b, value);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    return json_to_string(root, FALSE);
}

/* OpenDTU's answer to a POST: {"type":"success","code":1001} or a warning
 * with a message and a code (section 1.2). */
static gboolean post_accepted(JsonNode *root, char **reason)
{
    JsonObject *o = json_node_object(root);
    if (g_strcmp0(json_member_string(o, "type"), "success") == 0)
        return TRUE;
    double code = 0;
    json_member_number(o, "code", &code);
    const char *message = json_member_string(o, "message");
    *reason = g_strdup_printf("OpenDTU refused it: %s (code %.0f)", message ? message : "no message", code);
    return FALSE;
}

static void on_limit_sent(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error,
                          gpointer user_data)
{
    (void)client, (void)msg;
    Inverter *inv = user_data;
    Dtu *d = inv->dtu;
    inv->sending = FALSE;
    g_autofree char *reason = NULL;
    if (error) {
        wb_log(d->inst, WB_LOG_WARNING, "%s: sending the limit failed: %s", inv->label, error->message);
        inv->retry = TRUE;
        return;
    }
    if (!post_accepted(root, &reason)) {
        wb_log(d->inst, WB_LOG_ERROR, "%s: the limit was not sent: %s", inv->label, reason);
        inv->retry = TRUE;
        return;
    }
    inv->pending = TRUE;
    inv->pending_since = g_get_monotonic_time();
    inv->resend = FALSE;
    inv->retry = FALSE;
}

static void actuate(Inverter *inv)
{
    Dtu *d = inv->dtu;
    if (!inv->limit || inv->sending || inv->reachable != 1)
        return;
    gint64 now = g_get_monotonic_time();
    if (inv->pending) {
        if (now - inv->pending_since < d->limit_timeout)
            return;
        wb_log(d->inst, WB_LOG_WARNING, "%s: the limit %.1f %% was still pending after %.3g s: sending it again",
               inv->label, inv->sent_relative, (double)d->limit_timeout / G_USEC_PER_SEC);
        inv->pending = FALSE;
        inv->resend = TRUE;
    }
    double value, relative;
    if (!wanted_limit(inv, &value, &relative))
        return;
    gboolean matches = !isnan(inv->limit_relative) && fabs(inv->limit_relative - relative) <= d->tolerance;
    if (matches && !inv->resend && !inv->retry)
        return;
    if (inv->retry && now - inv->last_send < d->http.interval)
        return; /* a failed one is tried again once per poll */
    g_autofree char *body = limit_body(inv, value);
    wb_log(d->inst, WB_LOG_NOTICE, "%s: limit %g %s (%.1f %%; the inverter has %.1f %%)%s", inv->label, value,
           unit_names[d->limit_unit], relative, inv->limit_relative,
           inv->resend ? ", sent again" : inv->retry ? ", retried" : "");
    inv->sending = TRUE;
    inv->last_send = now;
    inv->sent_relative = relative;
    http_client_post_form(&d->http, "/api/limit/config", "data", body, on_limit_sent, inv);
}

/* ---- power and restart ------------------------------------------------------------------ */

static void on_power_sent(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error,
                          gpointer user_data)
{
    (void)client, (void)msg;
    Inverter *inv = user_data;
    inv->power_sending = FALSE;
    g_autofree char *reason = NULL;
    if (error)
        wb_log(inv->dtu->inst, WB_LOG_WARNING, "%s: the power command failed: %s", inv->label, error->message);
    else if (!post_accepted(root, &reason))
        wb_log(inv->dtu->inst, WB_LOG_ERROR, "%s: the power command was not sent: %s", inv->label, reason);
}

static void send_power(Inverter *inv, const char *key)
{
    g_autoptr(JsonBuilder) b = json_builder_new_immutable();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "serial");
    json_builder_add_string_value(b, inv->serial);
    json_builder_set_member_name(b, key);
    json_builder_add_boolean_value(b, strcmp(key, "restart") == 0 || inv->power->value >= 0.5);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autofree char *body = json_to_string(root, FALSE);
    wb_log(inv->dtu->inst, WB_LOG_NOTICE, "%s: %s", inv->label,
           strcmp(key, "restart") == 0 ? "restart" : inv->power->value >= 0.5 ? "power on" : "power off");
    inv->power_sending = TRUE;
    http_client_post_form(&inv->dtu->http, "/api/power/config", "data", body, on_power_sent, inv);
}

/* Power follows its point's changes, restart its rising edges: a command
 * the user gave, not a lease. */
static void switch_power(Inverter *inv)
{
    if (inv->power_sending || inv->reachable != 1)
        return;
    Input *p = inv->power, *r = inv->restart;
    if (p && p->seen && p->state == WB_POINT_VALID && (!p->have_last || (p->value >= 0.5) != (p->last_value >= 0.5))) {
        p->last_value = p->value;
        p->have_last = TRUE;
        send_power(inv, "power");
    } else if (r && r->seen && r->state == WB_POINT_VALID) {
        gboolean rising = r->have_last && r->last_value < 0.5 && r->value >= 0.5;
        r->last_value = r->value;
        r->have_last = TRUE;
        if (rising)
            send_power(inv, "restart");
    }
}

/* ---- polling ------------------------------------------------------------------------------ */

static void cycle_end(Dtu *d)
{
    if (http_client_cycle_end(&d->http)) {
        if (!d->unknown_warned) {
            d->unknown_warned = TRUE;
            for (guint i = 0; i < d->inverters->len; i++) {
                Inverter *inv = g_ptr_array_index(d->inverters, i);
                if (!inv->present && (inv->limit || inv->power || inv->restart))
                    wb_log(d->inst, WB_LOG_WARNING, "commands are configured for inverter %s, which this "
                           "OpenDTU does not list", inv->label);
            }
        }
        for (guint i = 0; i < d->inverters->len; i++) {
            Inverter *inv = g_ptr_array_index(d->inverters, i);
            actuate(inv);
            switch_power(inv);
        }
    }
}

static void fail_cycle(Dtu *d, const char *reason)
{
    http_client_cycle_failed(&d->http, NULL, reason);
}

/* A failed answer ends this step of the cycle with @next; TRUE if it failed. */
static gboolean answer_failed(Dtu *d, SoupMessage *msg, const GError *error, void (*next)(Dtu *d))
{
    if (!error)
        return FALSE;
    http_client_cycle_failed(&d->http, msg, error->message);
    next(d);
    return TRUE;
}

static void on_limit_status(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error,
                            gpointer user_data)
{
    (void)client;
    Dtu *d = user_data;
    if (answer_failed(d, msg, error, cycle_end))
        return;
    JsonObject *all = json_node_object(root);
    for (guint i = 0; i < d->inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(d->inverters, i);
        JsonObject *o = json_member_object(all, inv->serial);
        if (!o)
            continue;
        double v;
        if (json_member_number(o, "max_power", &v) && v > 0)
            inv->max_power = v;
        if (json_member_number(o, "limit_relative", &v))
            inv->limit_relative = v;
        const char *status = json_member_string(o, "limit_set_status");
        if (!inv->pending || !status)
            continue;
        if (strcmp(status, "Ok") == 0) {
            inv->pending = FALSE;
            wb_log(d->inst, WB_LOG_INFO, "%s: the inverter confirmed the limit (%.1f %%)", inv->label,
                   inv->sent_relative);
        } else if (strcmp(status, "Failure") == 0) {
            inv->pending = FALSE;
            inv->retry = TRUE;
            wb_log(d->inst, WB_LOG_WARNING, "%s: the inverter did not take the limit (Failure): retrying", inv->label);
        }
    }
    cycle_end(d);
}

/* After the statistics: the limits' state when there is an actuator. */
static void statistics_done(Dtu *d)
{
    if (d->http.cycle_failed || !d->have_commands) {
        cycle_end(d);
        return;
    }
    http_client_get(&d->http, "/api/limit/status", NULL, on_limit_status, d);
}

static void read_details(Dtu *d);

/* One inverter object of any era: status every poll; statistics when new
 * (or invalid when unreachable); F3 summaries queue a details request. */
static gboolean handle_inverter(Dtu *d, JsonObject *o, const Answer *a, GError **error)
{
    const char *serial = json_member_string(o, "serial");
    if (!serial || !*serial || !wb_point_name_is_valid(serial, FALSE)) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "an inverter without a usable \"serial\"");
        return FALSE;
    }
    Inverter *inv = find_inverter(d, serial);
    if (!inv)
        inv = add_inverter(d, serial);
    if (!inv->announced)
        wb_log(d->inst, WB_LOG_INFO, "inverter %s%s%s: %s", serial, strcmp(inv->label, serial) ? " as " : "",
               strcmp(inv->label, serial) ? inv->label : "", json_member_string(o, "name") ?: "(no name)");
    inv->present = inv->announced = TRUE;
    int reachable = json_member_bool(o, "reachable");
    if (reachable < 0) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "inverter %s without \"reachable\"", serial);
        return FALSE;
    }
    if (a->origin != FROM_DETAILS) {
        if (reachable != inv->reachable && inv->reachable >= 0)
            wb_log(d->inst, WB_LOG_NOTICE, "%s is %s", inv->label, reachable ? "reachable again" : "not reachable");
        if (reachable && inv->reachable == 0) {
            inv->resend = inv->limit != NULL; /* a non-persistent limit is gone after a restart */
            inv->sample_time = 0;
        }
        int was = inv->reachable;
        inv->reachable = reachable;
        publish_status(inv, o, a->at);
        if (!reachable) {
            if (was != 0)
                invalidate_statistics(inv);
            return TRUE;
        }
    } else if (!reachable) {
        return TRUE;
    }
    gint64 slack;
    gint64 t = sample_time(a, o, &slack);
    if (!is_new_sample(inv, t, slack))
        return TRUE;
    gboolean has_channels = json_object_has_member(o, "AC") || json_object_has_member(o, "0");
    if (!has_channels) {
        if (a->origin == FROM_FRAME)
            return TRUE; /* a frame without statistics: nothing to read later */
        if (a->origin == FROM_DETAILS) {
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "?inv=%s has no channel data", serial);
            return FALSE;
        }
        g_ptr_array_add(d->details, g_strdup(serial));
        return TRUE;
    }
    if (!publish_statistics(inv, o, t)) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "inverter %s without AC Power", serial);
        return FALSE;
    }
    inv->sample_time = t;
    return TRUE;
}

static void set_era(Dtu *d, int era)
{
    if (era != d->era)
        wb_log(d->inst, WB_LOG_INFO, "OpenDTU answers in format %s", era_names[era]);
    d->era = era;
}

static void on_details(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error, gpointer user_data)
{
    (void)client;
    Dtu *d = user_data;
    if (answer_failed(d, msg, error, statistics_done))
        return;
    g_autoptr(GError) problem = NULL;
    Answer answer = http_answer(d, FROM_DETAILS);
    JsonArray *a = json_member_array(json_node_object(root), "inverters");
    if (!a || json_array_get_length(a) != 1 || !JSON_NODE_HOLDS_OBJECT(json_array_get_element(a, 0)))
        g_set_error(&problem, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "?inv= did not answer with one inverter");
    else
        handle_inverter(d, json_array_get_object_element(a, 0), &answer, &problem);
    if (problem) {
        fail_cycle(d, problem->message);
        statistics_done(d);
        return;
    }
    read_details(d);
}

static void read_details(Dtu *d)
{
    if (!d->details->len) {
        statistics_done(d);
        return;
    }
    g_autofree char *serial = g_ptr_array_steal_index(d->details, 0);
    g_autofree char *escaped = g_uri_escape_string(serial, NULL, FALSE);
    g_autofree char *path = g_strdup_printf("/api/livedata/status?inv=%s", escaped);
    http_client_get(&d->http, path, NULL, on_details, d);
}

/* A /api/livedata/status answer, or a websocket @frame with some of the
 * inverters (merged by serial; the era is the web API's, not told by a
 * frame). */
static gboolean handle_livedata(Dtu *d, JsonNode *root, const Answer *a, GError **error)
{
    JsonArray *list = NULL;
    int era = ERA_UNKNOWN;
    if (JSON_NODE_HOLDS_ARRAY(root)) {
        list = json_node_get_array(root);
        era = ERA_F0;
    } else {
        list = json_member_array(json_node_object(root), "inverters");
    }
    if (!list) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "the answer has no \"inverters\" list");
        return FALSE;
    }
    gboolean frame = a->origin == FROM_FRAME;
    if (!frame) {
        for (guint i = 0; i < d->inverters->len; i++)
            ((Inverter *)g_ptr_array_index(d->inverters, i))->present = FALSE;
        g_ptr_array_set_size(d->details, 0);
    }
    for (guint i = 0; i < json_array_get_length(list); i++) {
        JsonNode *n = json_array_get_element(list, i);
        if (!JSON_NODE_HOLDS_OBJECT(n)) {
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "an inverter that is not an object");
            return FALSE;
        }
        JsonObject *o = json_node_get_object(n);
        if (era != ERA_F0)
            era = json_object_has_member(o, "AC") ? ERA_F2 : json_object_has_member(o, "0") ? ERA_F1 : ERA_F3;
        if (!handle_inverter(d, o, a, error))
            return FALSE;
    }
    if (era != ERA_UNKNOWN && !frame)
        set_era(d, era);
    return TRUE;
}

static void on_livedata(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error,
                        gpointer user_data)
{
    (void)client;
    Dtu *d = user_data;
    if (answer_failed(d, msg, error, statistics_done))
        return;
    g_autoptr(GError) problem = NULL;
    Answer answer = http_answer(d, FROM_POLL);
    if (!handle_livedata(d, root, &answer, &problem)) {
        fail_cycle(d, problem->message);
        statistics_done(d);
        return;
    }
    read_details(d);
}

/* ---- the /livedata websocket (section 1.4) ------------------------------------------------ */

/* OpenDTU pushes a frame per inverter when it has new statistics, and
 * again every 10 s without; while the websocket is open it replaces
 * polling /api/livedata/status (limits are still polled).  A frame's
 * sample time is its arrival minus data_age_ms; frames travel with some
 * delay of their own, so a sample moves only when that time moves by
 * more than the granularity plus this. */
#define WS_TRANSIT_ALLOWANCE (100 * 1000)

typedef struct WsConnect {
    Dtu *d; /* NULL once the instance stopped */
    GCancellable *cancel;
} WsConnect;

static void ws_connect(Dtu *d);

static void ws_failed(Dtu *d, const char *reason)
{
    if (g_strcmp0(reason, d->ws_failure) != 0)
        wb_log(d->inst, WB_LOG_NOTICE, "websocket %s/livedata: %s; polling every %.3g s, trying it again in %.3g s",
               d->http.base, reason, (double)d->http.interval / G_USEC_PER_SEC,
               (double)d->ws_retry / G_USEC_PER_SEC);
    remember(&d->ws_failure, reason);
    wb_timer_start(d->ws_retry_timer, (guint)MAX(1, d->ws_retry / 1000), FALSE);
}

static void ws_drop(Dtu *d)
{
    if (!d->ws)
        return;
    g_signal_handlers_disconnect_by_data(d->ws, d);
    if (soup_websocket_connection_get_state(d->ws) == SOUP_WEBSOCKET_STATE_OPEN)
        soup_websocket_connection_close(d->ws, SOUP_WEBSOCKET_CLOSE_GOING_AWAY, NULL);
    g_clear_object(&d->ws);
    wb_timer_stop(d->ws_idle_timer);
}

static void on_ws_message(SoupWebsocketConnection *ws, gint type, GBytes *message, gpointer user_data)
{
    (void)ws;
    Dtu *d = user_data;
    wb_timer_start(d->ws_idle_timer, (guint)MAX(1, d->ws_idle / 1000), FALSE);
    if (type != SOUP_WEBSOCKET_DATA_TEXT)
        return;
    gsize len;
    const char *data = g_bytes_get_data(message, &len);
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) error = NULL;
    Answer answer = {FROM_FRAME, g_get_real_time(), WS_TRANSIT_ALLOWANCE};
    if (!json_parser_load_from_data(parser, data, (gssize)len, &error) ||
        !handle_livedata(d, json_parser_get_root(parser), &answer, &error)) {
        wb_log_ratelimited(d->inst, WB_LOG_WARNING, "ws-frame", "a /livedata frame is no good: %s", error->message);
    }
}

static void on_ws_closed(SoupWebsocketConnection *ws, gpointer user_data)
{
    Dtu *d = user_data;
    g_autofree char *reason = g_strdup_printf("closed by the device (code %u)", soup_websocket_connection_get_close_code(ws));
    ws_drop(d);
    ws_failed(d, reason);
}

static void on_ws_idle(gpointer user_data)
{
    Dtu *d = user_data;
    g_autofree char *reason = g_strdup_printf("no frame for %.3g s", (double)d->ws_idle / G_USEC_PER_SEC);
    ws_drop(d);
    ws_failed(d, reason);
}

static void on_ws_connected(GObject *source, GAsyncResult *result, gpointer user_data)
{
    WsConnect *c = user_data;
    g_autoptr(GError) error = NULL;
    SoupWebsocketConnection *ws = soup_session_websocket_connect_finish(SOUP_SESSION(source), result, &error);
    Dtu *d = c->d;
    g_object_unref(c->cancel);
    g_free(c);
    if (!d) { /* stopped meanwhile */
        g_clear_object(&ws);
        return;
    }
    d->connecting = NULL;
    if (!ws) {
        ws_failed(d, error->message);
        return;
    }
    d->ws = ws;
    soup_websocket_connection_set_keepalive_interval(ws, 0);
    g_signal_connect(ws, "message", G_CALLBACK(on_ws_message), d);
    g_signal_connect(ws, "closed", G_CALLBACK(on_ws_closed), d);
    wb_timer_start(d->ws_idle_timer, (guint)MAX(1, d->ws_idle / 1000), FALSE);
    wb_log(d->inst, WB_LOG_NOTICE, "following %s/livedata over a websocket%s", d->http.base,
           d->have_commands ? " (the limits' state is still polled)" : "");
    g_clear_pointer(&d->ws_failure, g_free);
}

static void ws_connect(Dtu *d)
{
    if (d->ws || d->connecting)
        return;
    /* libsoup takes the http(s) URL for a websocket handshake */
    g_autofree char *url = g_strconcat(d->http.base, "/livedata", NULL);
    SoupMessage *msg = http_client_prepare(&d->http, soup_message_new(SOUP_METHOD_GET, url));
    WsConnect *c = g_new0(WsConnect, 1);
    c->d = d;
    c->cancel = g_cancellable_new();
    d->connecting = c;
    soup_session_websocket_connect_async(d->http.session, msg, NULL, NULL, G_PRIORITY_DEFAULT, c->cancel,
                                         on_ws_connected, c);
    g_object_unref(msg);
}

static void on_ws_retry(gpointer user_data)
{
    ws_connect(user_data);
}

static void ws_stop(Dtu *d)
{
    if (d->connecting) {
        d->connecting->d = NULL;
        g_cancellable_cancel(d->connecting->cancel);
        d->connecting = NULL;
    }
    ws_drop(d);
}

static void poll_dtu(HttpClient *client, gpointer user_data)
{
    (void)client;
    Dtu *d = user_data;
    if (d->ws) { /* the websocket brings the statistics */
        statistics_done(d);
        return;
    }
    http_client_get(&d->http, "/api/livedata/status", NULL, on_livedata, d);
}

/* ---- points in ------------------------------------------------------------------------------ */

static void take_input(Input *in, const WbPoint *point, WbPointState state)
{
    in->seen = TRUE;
    in->state = state == WB_POINT_VALID && wb_point_is_string(point) ? WB_POINT_INVALID : state;
    if (in->state == WB_POINT_VALID)
        in->value = wb_point_get_double(point);
}

static void on_input(const WbPoint *point, WbPointState state, gpointer user_data)
{
    Dtu *d = user_data;
    const char *name = wb_point_get_name(point);
    for (guint i = 0; i < d->inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(d->inverters, i);
        Input *inputs[] = {inv->limit, inv->power, inv->restart};
        for (guint k = 0; k < G_N_ELEMENTS(inputs); k++)
            if (inputs[k] && strcmp(inputs[k]->point, name) == 0)
                take_input(inputs[k], point, state);
    }
}

static void on_input_batch_end(gpointer user_data)
{
    Dtu *d = user_data;
    if (d->http.failure || d->era == ERA_UNKNOWN)
        return; /* the next good poll acts */
    for (guint i = 0; i < d->inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(d->inverters, i);
        actuate(inv);
        switch_power(inv);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void dtu_free(Dtu *d)
{
    ws_stop(d);
    g_free(d->ws_failure);
    http_client_clear(&d->http);
    if (d->aliases)
        g_hash_table_unref(d->aliases);
    if (d->inverters)
        g_ptr_array_unref(d->inverters);
    if (d->details)
        g_ptr_array_unref(d->details);
    g_free(d);
}

/* "limit.garage": the inverter named by serial or alias */
static Inverter *inverter_for_key(Dtu *d, const WbConfig *config, const char *key, GError **error)
{
    const char *name = strchr(key, '.') + 1;
    GHashTableIter it;
    gpointer serial, alias;
    g_hash_table_iter_init(&it, d->aliases);
    while (g_hash_table_iter_next(&it, &serial, &alias))
        if (strcmp(alias, name) == 0)
            name = serial;
    for (const char *c = name; *c; c++) {
        if (!g_ascii_isxdigit(*c)) {
            wb_config_set_error(config, error, key, "\"%s\" is neither an inverter serial nor an alias", name);
            return NULL;
        }
    }
    Inverter *inv = find_inverter(d, name);
    return inv ? inv : add_inverter(d, name);
}

static Input *input_new(const char *point)
{
    Input *in = g_new0(Input, 1);
    in->point = g_strdup(point);
    return in;
}

static gboolean dtu_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Dtu *d = g_new0(Dtu, 1);
    d->inst = instance;
    d->era = ERA_UNKNOWN;
    d->aliases = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    d->inverters = g_ptr_array_new_with_free_func(inverter_free);
    d->details = g_ptr_array_new_with_free_func(g_free);
    if (!http_client_init(&d->http, instance, config, error)) {
        dtu_free(d);
        return FALSE;
    }
    http_client_set_basic_auth(&d->http, "admin", wb_config_get_string(config, "password"));
    for (const char *const *key = wb_config_get_family(config, "alias."); *key; key++) {
        const char *alias = wb_config_get_string(config, *key);
        if (!wb_point_name_is_valid(alias, FALSE) || strchr(alias, '/')) {
            wb_config_set_error(config, error, *key, "\"%s\" cannot be a point name level ([A-Za-z0-9_.-])", alias);
            dtu_free(d);
            return FALSE;
        }
        g_hash_table_insert(d->aliases, g_strdup(*key + strlen("alias.")), g_strdup(alias));
    }
    d->limit_unit = wb_config_get_enum(config, "limit-unit");
    gboolean have_fallback = wb_config_has_key(config, "fallback-limit");
    d->fallback = have_fallback ? wb_config_get_double(config, "fallback-limit") : 0;
    d->max_power = wb_config_get_double(config, "max-power");
    d->setpoint_max_age = wb_config_get_duration(config, "setpoint-max-age");
    d->limit_timeout = wb_config_get_duration(config, "limit-timeout");
    d->tolerance = wb_config_get_double(config, "limit-tolerance");
    d->use_websocket = wb_config_get_enum(config, "websocket") == 0;
    d->ws_idle = wb_config_get_duration(config, "websocket-idle");
    d->ws_retry = wb_config_get_duration(config, "websocket-retry");
    static const char *const families[] = {"limit.", "power.", "restart."};
    for (guint f = 0; f < G_N_ELEMENTS(families); f++) {
        for (const char *const *key = wb_config_get_family(config, families[f]); *key; key++) {
            Inverter *inv = inverter_for_key(d, config, *key, error);
            if (!inv) {
                dtu_free(d);
                return FALSE;
            }
            Input **slot = f == 0 ? &inv->limit : f == 1 ? &inv->power : &inv->restart;
            input_free(*slot); /* alias and serial both given: the last wins */
            *slot = input_new(wb_config_get_string(config, *key));
            d->have_commands = TRUE;
        }
    }
    gboolean limits = FALSE;
    for (guint i = 0; i < d->inverters->len; i++)
        limits |= ((Inverter *)g_ptr_array_index(d->inverters, i))->limit != NULL;
    if (limits && !have_fallback) {
        wb_config_set_error(config, error, "fallback-limit",
                            "required with limit.<inverter>: what to send when the limit point fails and at stop");
        dtu_free(d);
        return FALSE;
    }
    if (d->have_commands && !wb_config_get_string(config, "password"))
        wb_log(instance, WB_LOG_WARNING, "limit, power and restart need the admin password (option password)");
    *state = d;
    return TRUE;
}

static gboolean dtu_start(gpointer state, GError **error)
{
    (void)error;
    Dtu *d = state;
    WbSubscription *sub = NULL;
    for (guint i = 0; i < d->inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(d->inverters, i);
        Input *inputs[] = {inv->limit, inv->power, inv->restart};
        for (guint k = 0; k < G_N_ELEMENTS(inputs); k++) {
            if (!inputs[k])
                continue;
            if (!sub)
                sub = wb_subscribe(d->inst, inputs[k]->point, d->setpoint_max_age, on_input, on_input_batch_end, d);
            else
                wb_subscription_add_pattern(sub, inputs[k]->point);
        }
    }
    d->ws_idle_timer = wb_timer_new(d->inst, on_ws_idle, d);
    d->ws_retry_timer = wb_timer_new(d->inst, on_ws_retry, d);
    if (d->use_websocket)
        ws_connect(d);
    http_client_start_polling(&d->http, poll_dtu, d);
    return TRUE;
}

/* The instance stops (the daemon stops, or a reload replaces it while the
 * main loop keeps running for the others): every limit gets the
 * fallback, once, all of them within one timeout. */
static void dtu_stop(gpointer state)
{
    Dtu *d = state;
    ws_stop(d);
    wb_timer_free(d->ws_idle_timer);
    wb_timer_free(d->ws_retry_timer);
    d->ws_idle_timer = d->ws_retry_timer = NULL;
    http_client_cancel(&d->http);
    /* all of them within one timeout: a reload waits on this */
    gint64 deadline = g_get_monotonic_time() + d->http.timeout;
    for (guint i = 0; i < d->inverters->len; i++) {
        Inverter *inv = g_ptr_array_index(d->inverters, i);
        double value, relative, hi;
        if (!inv->limit || !inv->present)
            continue;
        if (!clamp_limit(inv, d->fallback, &value, &relative, &hi)) {
            wb_log(d->inst, WB_LOG_ERROR, "%s: stopping: no fallback limit sent: the inverter's nominal power is "
                   "not known, so the limit's hard limits are not", inv->label);
            continue;
        }
        g_autofree char *body = limit_body(inv, value);
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) root =
            http_client_post_form_sync(&d->http, "/api/limit/config", "data", body, deadline, &error);
        g_autofree char *reason = NULL;
        if (!root)
            wb_log(d->inst, WB_LOG_ERROR, "%s: stopping: the fallback limit %g %s was not sent: %s", inv->label, value,
                   unit_names[d->limit_unit], error->message);
        else if (!post_accepted(root, &reason))
            wb_log(d->inst, WB_LOG_ERROR, "%s: stopping: the fallback limit was not sent: %s", inv->label, reason);
        else
            wb_log(d->inst, WB_LOG_NOTICE, "%s: stopping: fallback limit %g %s sent", inv->label, value,
                   unit_names[d->limit_unit]);
    }
    http_client_clear(&d->http);
}

static void dtu_destroy(gpointer state)
{
    dtu_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = dtu_create,
    .start = dtu_start,
    .stop = dtu_stop,
    .destroy = dtu_destroy,
};

WB_PLUGIN_DEFINE("opendtu", WB_VERSION,
                 "Reads the Hoymiles inverters behind an OpenDTU and applies power limits to them",
                 "GPL-3.0-or-later", WB_ROLE_SOURCE | WB_ROLE_ACTUATOR, options, &ops)
