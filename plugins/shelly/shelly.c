/* shelly: reads a Shelly energy meter over HTTP (source).
 *
 * Facts from ../shared/reference/device-apis.md section 2 (Shelly's gen1
 * and gen2 API documentation, evcc-io/evcc meter/shelly/ sources):
 *  - GET /shelly is never protected and tells the generation: gen1 has
 *    "type" (SHEM = EM, SHEM-3 = 3EM) and no "gen"; gen2+ has "gen",
 *    "app" (Pro3EM, ProEM) and, on a Pro 3EM, "profile" (triphase or
 *    monophase).
 *  - gen1 GET /status: emeters[] (EM: 2 CT channels; 3EM: phases A, B, C)
 *    with power (W), reactive (var, EM only), pf, current (3EM), voltage,
 *    is_valid, total and total_returned (Wh).  Basic authentication.
 *  - gen2 GET /rpc/EM.GetStatus?id=0 (a_/b_/c_ current, voltage,
 *    act_power, aprt_power, pf, freq; total_current, total_act_power,
 *    total_aprt_power) and EMData.GetStatus?id=0 (per phase
 *    total_act_energy and total_act_ret_energy, total_act, total_act_ret,
 *    Wh) on a triphase Pro 3EM; EM1.GetStatus?id=N and EM1Data.GetStatus
 *    on a Pro EM or a monophase Pro 3EM.  Digest authentication per RFC
 *    7616 with SHA-256 (user admin, realm = the device id), which libsoup
 *    3.2 does not do (its digest is MD5): the Authorization header is made
 *    here from the 401's challenge.
 *  - power is > 0 for import and < 0 for export on both generations (with
 *    the CT arrow as installed): our grid sign.  The power factor is
 *    unsigned on gen2 even while exporting, so direction never comes from
 *    it; ours takes the sign of active power (quantities.h).
 *
 * Points: power, current, apparent-power, frequency, energy-import and
 * energy-export (kWh) for the meter, and per phase l1..l3 on three-phase
 * meters; a single-channel meter (EM, Pro EM, monophase Pro 3EM) is read
 * from the CT its "channel" option names. */
#include "../http/http-client.h"

#include <math.h>

/* Shelly's power sign is ours for a grid meter: > 0 import (section 2.2,
 * "Sign convention summary").  invert = true is for a CT fitted the other
 * way round. */
#define SHELLY_POWER_SIGN (+1)

enum { KIND_UNKNOWN, KIND_GEN1_EM, KIND_GEN1_3EM, KIND_GEN2_EM, KIND_GEN2_EM1 };
static const char *const kind_names[] = {"?", "Shelly EM (gen1)", "Shelly 3EM (gen1)",
                                         "Shelly Pro 3EM (gen2, triphase)", "Shelly gen2 EM1 meter"};

typedef struct {
    WbInstance *inst;
    HttpClient http;
    char *password;
    int sign;             /* SHELLY_POWER_SIGN, or its opposite with invert */
    guint channel;        /* 0-based CT for single-channel meters */
    int kind;
    char *app;            /* gen2 "app", for the log */
    /* the current cycle */
    JsonNode *status;     /* gen2: EM(1).GetStatus, waiting for its EMData */
    /* gen2 digest authentication (RFC 7616) */
    char *realm, *nonce, *opaque;
    guint nc;
    gboolean digest_failed; /* the last try with credentials got 401 on the same nonce */
} Shelly;

static const WbOptionSpec options[] = {
    HTTP_CLIENT_OPTIONS,
    {.name = "password", .type = WB_OPTION_STRING, .flags = WB_OPTION_SECRET,
     .help = "The device's admin password, when its authentication is on (never logged; keep the file "
             "readable by root and the service user only)"},
    {.name = "channel", .type = WB_OPTION_INT, .default_value = "1", .min = 1, .max = 3,
     .help = "Single-channel meters (EM, Pro EM, Pro 3EM in monophase): the CT that is this meter"},
    {.name = "invert", .type = WB_OPTION_BOOL, .default_value = "false",
     .help = "The CT is fitted the other way round: swap import and export"},
    {NULL},
};

/* ---- digest authentication (RFC 7616, SHA-256) ------------------------------------ */

static char *sha256_hex(const char *text)
{
    return g_compute_checksum_for_string(G_CHECKSUM_SHA256, text, -1);
}

/* Keeps the challenge of a 401; FALSE when there is none we can answer. */
static gboolean take_challenge(Shelly *s, SoupMessage *msg)
{
    const char *header = soup_message_headers_get_list(soup_message_get_response_headers(msg), "WWW-Authenticate");
    if (!header || g_ascii_strncasecmp(header, "Digest ", 7) != 0)
        return FALSE;
    g_autoptr(GHashTable) params = soup_header_parse_param_list(header + 7);
    const char *algorithm = g_hash_table_lookup(params, "algorithm");
    const char *nonce = g_hash_table_lookup(params, "nonce");
    const char *qop = g_hash_table_lookup(params, "qop");
    if (!nonce || !algorithm || g_ascii_strcasecmp(algorithm, "SHA-256") != 0 || (qop && !strstr(qop, "auth")))
        return FALSE;
    s->digest_failed = s->nonce && strcmp(s->nonce, nonce) == 0;
    g_free(s->realm);
    g_free(s->nonce);
    g_free(s->opaque);
    s->realm = g_strdup(g_hash_table_lookup(params, "realm"));
    s->nonce = g_strdup(nonce);
    s->opaque = g_strdup(g_hash_table_lookup(params, "opaque"));
    s->nc = 0;
    return TRUE;
}

/* Authorization for GET @uri (path and query) with the kept challenge. */
static char *digest_header(Shelly *s, const char *uri)
{
    g_autofree char *cnonce = g_strdup_printf("%08x%08x", g_random_int(), g_random_int());
    char nc[9];
    g_snprintf(nc, sizeof nc, "%08x", ++s->nc);
    g_autofree char *a1 = g_strdup_printf("admin:%s:%s", s->realm ? s->realm : "", s->password);
    g_autofree char *a2 = g_strdup_printf("GET:%s", uri);
    g_autofree char *ha1 = sha256_hex(a1);
    g_autofree char *ha2 = sha256_hex(a2);
    g_autofree char *kd = g_strdup_printf("%s:%s:%s:%s:auth:%s", ha1, s->nonce, nc, cnonce, ha2);
    g_autofree char *response = sha256_hex(kd);
    GString *h = g_string_new("Digest ");
    g_string_append(h, "username=\"admin\", ");
    soup_header_g_string_append_param_quoted(h, "realm", s->realm ? s->realm : "");
    g_string_append(h, ", ");
    soup_header_g_string_append_param_quoted(h, "nonce", s->nonce);
    g_string_append(h, ", ");
    soup_header_g_string_append_param_quoted(h, "uri", uri);
    g_string_append_printf(h, ", algorithm=SHA-256, qop=auth, nc=%s, ", nc);
    soup_header_g_string_append_param_quoted(h, "cnonce", cnonce);
    g_string_append(h, ", ");
    soup_header_g_string_append_param_quoted(h, "response", response);
    if (s->opaque) {
        g_string_append(h, ", ");
        soup_header_g_string_append_param_quoted(h, "opaque", s->opaque);
    }
    return g_string_free(h, FALSE);
}

typedef struct {
    Shelly *shelly;
    char *uri;
    HttpDoneFunc done;
    gboolean retried;
} Get;

static void get_free(Get *g)
{
    g_free(g->uri);
    g_free(g);
}

static void get_send(Get *g);

/* gen2 answers 401 with a digest challenge: answer it once per request. */
static void on_get(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error, gpointer user_data)
{
    Get *g = user_data;
    Shelly *s = g->shelly;
    gboolean unauthorized = error && soup_message_get_status(msg) == SOUP_STATUS_UNAUTHORIZED;
    if (unauthorized && s->password && !g->retried && take_challenge(s, msg) && !s->digest_failed) {
        Get *again = g_new0(Get, 1); /* g is freed when we return */
        again->shelly = s;
        again->uri = g_strdup(g->uri);
        again->done = g->done;
        again->retried = TRUE;
        get_send(again);
        return;
    }
    g_autoptr(GError) wrong = NULL;
    if (unauthorized && s->password && (g->retried || s->digest_failed))
        wrong = g_error_new(HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_STATUS, "HTTP 401 Unauthorized: the password is wrong");
    g->done(client, msg, root, wrong ? wrong : error, s);
}

/* Sends @g (taking it), with the digest when there is a challenge. */
static void get_send(Get *g)
{
    Shelly *s = g->shelly;
    g_autofree char *auth = s->nonce && s->password ? digest_header(s, g->uri) : NULL;
    const char *headers[] = {"Authorization", auth, NULL};
    http_client_get_full(&s->http, g->uri, auth ? headers : NULL, on_get, g, (GDestroyNotify)get_free);
}

static void shelly_get(Shelly *s, const char *uri, HttpDoneFunc done)
{
    Get *g = g_new0(Get, 1);
    g->shelly = s;
    g->uri = g_strdup(uri);
    g->done = done;
    get_send(g);
}

/* ---- values ---------------------------------------------------------------------- */

typedef struct {
    WbBatch *batch;
    const char *prefix; /* "" or "l1/" */
} Out;

static void put(Out *o, const char *quantity, double value)
{
    g_autofree char *name = g_strconcat(o->prefix, quantity, NULL);
    wb_batch_add_double(o->batch, name, value, NULL);
}

static void put_number(Out *o, JsonObject *obj, const char *member, const char *quantity, double scale)
{
    double v;
    if (json_member_number(obj, member, &v))
        put(o, quantity, v * scale);
}

/* Power and power factor in our sign; the factor's sign follows power,
 * never the other way round. */
static void put_power(Shelly *s, Out *o, JsonObject *obj, const char *power_member, const char *pf_member)
{
    double p, pf;
    if (!json_member_number(obj, power_member, &p))
        return;
    p *= s->sign;
    put(o, "power", p);
    if (pf_member && json_member_number(obj, pf_member, &pf))
        put(o, "power-factor", p < 0 ? -fabs(pf) : fabs(pf));
}

/* Energy counters in kWh; invert swaps import and export. */
static void put_energy(Shelly *s, Out *o, JsonObject *obj, const char *import_member, const char *export_member)
{
    const char *imp = s->sign > 0 ? import_member : export_member;
    const char *exp = s->sign > 0 ? export_member : import_member;
    put_number(o, obj, imp, "energy-import", 1e-3);
    put_number(o, obj, exp, "energy-export", 1e-3);
}

static void invalid_all(Out *o)
{
    static const char *const q[] = {"power", "power-factor", "voltage", "current", "reactive-power"};
    for (guint i = 0; i < G_N_ELEMENTS(q); i++) {
        g_autofree char *name = g_strconcat(o->prefix, q[i], NULL);
        wb_batch_add_invalid(o->batch, name);
    }
}

/* gen1 emeters[] entry: is_valid false makes its values invalid. */
static void put_gen1_meter(Shelly *s, Out *o, JsonObject *m)
{
    if (json_member_bool(m, "is_valid") == 0) {
        invalid_all(o);
        return;
    }
    put_power(s, o, m, "power", "pf");
    put_number(o, m, "reactive", "reactive-power", s->sign);
    put_number(o, m, "voltage", "voltage", 1);
    put_number(o, m, "current", "current", 1);
    put_energy(s, o, m, "total", "total_returned");
}

static gboolean publish_gen1(Shelly *s, JsonNode *root, GError **error)
{
    JsonArray *meters = json_member_array(json_node_object(root), "emeters");
    guint want = s->kind == KIND_GEN1_3EM ? 3 : s->channel + 1;
    if (!meters || json_array_get_length(meters) < want) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "/status has no emeters[%u]", want - 1);
        return FALSE;
    }
    for (guint i = 0; i < want; i++) {
        if (!JSON_NODE_HOLDS_OBJECT(json_array_get_element(meters, i)) ||
            !json_object_has_member(json_array_get_object_element(meters, i), "power")) {
            g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "emeters[%u] has no power", i);
            return FALSE;
        }
    }
    Out o = {.batch = wb_batch_new(s->inst), .prefix = ""};
    wb_batch_set_time(o.batch, s->http.answered_at);
    if (s->kind == KIND_GEN1_EM) {
        put_gen1_meter(s, &o, json_array_get_object_element(meters, s->channel));
    } else {
        double total = 0, imp = 0, exp = 0;
        gboolean all_valid = TRUE;
        for (guint i = 0; i < 3; i++) {
            JsonObject *m = json_array_get_object_element(meters, i);
            char prefix[4] = {'l', (char)('1' + i), '/', 0};
            Out phase = {.batch = o.batch, .prefix = prefix};
            put_gen1_meter(s, &phase, m);
            double p = 0, e = 0;
            all_valid &= json_member_bool(m, "is_valid") != 0;
            json_member_number(m, "power", &p);
            total += p;
            if (json_member_number(m, "total", &e))
                imp += e;
            if (json_member_number(m, "total_returned", &e))
                exp += e;
        }
        if (all_valid) {
            put(&o, "power", total * s->sign);
            put(&o, "energy-import", (s->sign > 0 ? imp : exp) * 1e-3);
            put(&o, "energy-export", (s->sign > 0 ? exp : imp) * 1e-3);
        } else {
            wb_batch_add_invalid(o.batch, "power");
        }
    }
    wb_batch_commit(o.batch);
    return TRUE;
}

/* gen2 EM.GetStatus + EMData.GetStatus (triphase) */
static gboolean publish_gen2_em(Shelly *s, JsonObject *st, JsonObject *data, GError **error)
{
    double v;
    if (!json_member_number(st, "total_act_power", &v)) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "EM.GetStatus has no total_act_power");
        return FALSE;
    }
    Out o = {.batch = wb_batch_new(s->inst), .prefix = ""};
    wb_batch_set_time(o.batch, s->http.answered_at);
    put_power(s, &o, st, "total_act_power", NULL);
    put_number(&o, st, "total_current", "current", 1);
    put_number(&o, st, "total_aprt_power", "apparent-power", 1);
    put_number(&o, st, "a_freq", "frequency", 1);
    put_energy(s, &o, data, "total_act", "total_act_ret");
    for (guint i = 0; i < 3; i++) {
        char prefix[4] = {'l', (char)('1' + i), '/', 0};
        Out phase = {.batch = o.batch, .prefix = prefix};
        char ph = (char)('a' + i);
        g_autofree char *p = g_strdup_printf("%c_act_power", ph);
        g_autofree char *pf = g_strdup_printf("%c_pf", ph);
        g_autofree char *u = g_strdup_printf("%c_voltage", ph);
        g_autofree char *c = g_strdup_printf("%c_current", ph);
        g_autofree char *va = g_strdup_printf("%c_aprt_power", ph);
        g_autofree char *f = g_strdup_printf("%c_freq", ph);
        g_autofree char *ei = g_strdup_printf("%c_total_act_energy", ph);
        g_autofree char *ee = g_strdup_printf("%c_total_act_ret_energy", ph);
        put_power(s, &phase, st, p, pf);
        put_number(&phase, st, u, "voltage", 1);
        put_number(&phase, st, c, "current", 1);
        put_number(&phase, st, va, "apparent-power", 1);
        put_number(&phase, st, f, "frequency", 1);
        put_energy(s, &phase, data, ei, ee);
    }
    wb_batch_commit(o.batch);
    return TRUE;
}

/* gen2 EM1.GetStatus + EM1Data.GetStatus (one channel) */
static gboolean publish_gen2_em1(Shelly *s, JsonObject *st, JsonObject *data, GError **error)
{
    double v;
    if (!json_member_number(st, "act_power", &v)) {
        g_set_error(error, HTTP_CLIENT_ERROR, HTTP_CLIENT_ERROR_BODY, "EM1.GetStatus has no act_power");
        return FALSE;
    }
    Out o = {.batch = wb_batch_new(s->inst), .prefix = ""};
    wb_batch_set_time(o.batch, s->http.answered_at);
    put_power(s, &o, st, "act_power", "pf");
    put_number(&o, st, "voltage", "voltage", 1);
    put_number(&o, st, "current", "current", 1);
    put_number(&o, st, "aprt_power", "apparent-power", 1);
    put_number(&o, st, "freq", "frequency", 1);
    put_energy(s, &o, data, "total_act_energy", "total_act_ret_energy");
    wb_batch_commit(o.batch);
    return TRUE;
}

/* ---- the poll cycle ------------------------------------------------------------------ */

static void poll_data(Shelly *s);

static void end_cycle(Shelly *s, SoupMessage *msg, const char *failure)
{
    g_clear_pointer(&s->status, json_node_unref);
    if (failure) {
        http_client_cycle_failed(&s->http, msg, failure);
        s->kind = KIND_UNKNOWN; /* it may come back as something else */
    }
    http_client_cycle_end(&s->http);
}

static void on_data(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error, gpointer user_data)
{
    (void)client;
    Shelly *s = user_data;
    if (error) {
        end_cycle(s, msg, error->message);
        return;
    }
    g_autoptr(GError) problem = NULL;
    if (s->kind == KIND_GEN1_EM || s->kind == KIND_GEN1_3EM) {
        publish_gen1(s, root, &problem);
    } else if (!s->status) { /* the status; the energies next */
        s->status = json_node_ref(root);
        g_autofree char *uri = g_strdup_printf(s->kind == KIND_GEN2_EM ? "/rpc/EMData.GetStatus?id=0"
                                                                       : "/rpc/EM1Data.GetStatus?id=%u",
                                               s->channel);
        shelly_get(s, uri, on_data);
        return;
    } else {
        JsonObject *st = json_node_object(s->status);
        JsonObject *data = json_node_object(root);
        if (s->kind == KIND_GEN2_EM)
            publish_gen2_em(s, st, data, &problem);
        else
            publish_gen2_em1(s, st, data, &problem);
    }
    end_cycle(s, msg, problem ? problem->message : NULL);
}

static void poll_data(Shelly *s)
{
    if (s->kind == KIND_GEN1_EM || s->kind == KIND_GEN1_3EM) {
        shelly_get(s, "/status", on_data);
    } else {
        g_autofree char *uri = s->kind == KIND_GEN2_EM ? g_strdup("/rpc/EM.GetStatus?id=0")
                                                       : g_strdup_printf("/rpc/EM1.GetStatus?id=%u", s->channel);
        shelly_get(s, uri, on_data);
    }
}

/* /shelly: which device this is (section 2.1, 2.2). */
static void on_identity(HttpClient *client, SoupMessage *msg, JsonNode *root, const GError *error,
                        gpointer user_data)
{
    (void)client;
    Shelly *s = user_data;
    if (error) {
        end_cycle(s, msg, error->message);
        return;
    }
    JsonObject *o = json_node_object(root);
    double gen = 0;
    const char *type = json_member_string(o, "type");
    const char *app = json_member_string(o, "app");
    const char *profile = json_member_string(o, "profile");
    int kind = KIND_UNKNOWN;
    if (json_member_number(o, "gen", &gen) && gen >= 2) {
        if (app && strcmp(app, "Pro3EM") == 0 && g_strcmp0(profile, "monophase") != 0)
            kind = KIND_GEN2_EM;
        else if (app && (strcmp(app, "ProEM") == 0 || strcmp(app, "Pro3EM") == 0 || g_str_has_prefix(app, "EM")))
            kind = KIND_GEN2_EM1;
    } else if (type) {
        kind = strcmp(type, "SHEM-3") == 0 ? KIND_GEN1_3EM : strcmp(type, "SHEM") == 0 ? KIND_GEN1_EM : KIND_UNKNOWN;
    }
    if (kind == KIND_UNKNOWN) {
        g_autofree char *what = g_strdup_printf("/shelly names no energy meter this plugin reads (type %s, app %s)",
                                                type ? type : "-", app ? app : "-");
        end_cycle(s, msg, what);
        return;
    }
    guint channels = kind == KIND_GEN1_EM ? 2 : kind == KIND_GEN2_EM1 && g_strcmp0(app, "ProEM") == 0 ? 2 : 3;
    if ((kind == KIND_GEN1_EM || kind == KIND_GEN2_EM1) && s->channel >= channels) {
        g_autofree char *what = g_strdup_printf("channel %u: this meter has %u", s->channel + 1, channels);
        end_cycle(s, msg, what);
        return;
    }
    if (kind != s->kind || g_strcmp0(app, s->app) != 0)
        wb_log(s->inst, WB_LOG_INFO, "%s is a %s%s%s", s->http.base, kind_names[kind], app ? ", app " : "",
               app ? app : "");
    g_free(s->app);
    s->app = g_strdup(app);
    s->kind = kind;
    /* gen1 wants Basic authentication; gen2 gets its digest from the 401 */
    if (kind == KIND_GEN1_EM || kind == KIND_GEN1_3EM)
        http_client_set_basic_auth(&s->http, "admin", s->password);
    poll_data(s);
}

static void poll_shelly(HttpClient *client, gpointer user_data)
{
    (void)client;
    Shelly *s = user_data;
    if (s->kind == KIND_UNKNOWN)
        http_client_get(&s->http, "/shelly", NULL, on_identity, s);
    else
        poll_data(s);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void shelly_free(Shelly *s)
{
    http_client_clear(&s->http);
    g_clear_pointer(&s->status, json_node_unref);
    g_free(s->password);
    g_free(s->app);
    g_free(s->realm);
    g_free(s->nonce);
    g_free(s->opaque);
    g_free(s);
}

static gboolean shelly_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Shelly *s = g_new0(Shelly, 1);
    s->inst = instance;
    if (!http_client_init(&s->http, instance, config, error)) {
        shelly_free(s);
        return FALSE;
    }
    s->password = g_strdup(wb_config_get_string(config, "password"));
    s->channel = (guint)wb_config_get_int(config, "channel") - 1;
    s->sign = wb_config_get_bool(config, "invert") ? -SHELLY_POWER_SIGN : SHELLY_POWER_SIGN;
    *state = s;
    return TRUE;
}

static gboolean shelly_start(gpointer state, GError **error)
{
    (void)error;
    Shelly *s = state;
    http_client_start_polling(&s->http, poll_shelly, s);
    return TRUE;
}

static void shelly_stop(gpointer state)
{
    Shelly *s = state;
    http_client_clear(&s->http);
}

static void shelly_destroy(gpointer state)
{
    shelly_free(state);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = shelly_create,
    .start = shelly_start,
    .stop = shelly_stop,
    .destroy = shelly_destroy,
};

WB_PLUGIN_DEFINE("shelly", WB_VERSION, "Reads a Shelly EM, 3EM, Pro EM or Pro 3EM energy meter over HTTP",
                 "GPL-3.0-or-later", WB_ROLE_SOURCE, options, &ops)
