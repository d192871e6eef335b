/* meter-emulator: serves a register map as an emulated Modbus device (sink),
 * and dtsu666, its preset for the CHINT DTSU666 (the same code built with
 * WB_PRESET_DTSU666: plugin name dtsu666, map = chint-dtsu666).
 *
 * Serves any map from data/devices on the host-owned Modbus server (RTU or
 * TCP), filled from points wired with "point.<measurement> = <point>",
 * where a measurement is a register key of the map ("<quantity>[-<channel>]":
 * power, voltage-l1, soc, power-dc1, ...).  The meter quantities below are
 * derived when not wired, where physics allows (sums of phases, S from P and
 * Q, PF = P / S, line voltages from phase voltages, I = S / U with a wired
 * voltage), and otherwise take the map's declared default: a current is
 * never computed from the nominal voltage, which is not a measurement.  A
 * stale or invalid source is handled by the on-stale / on-invalid policies;
 * energy counters served never decrease, across restarts too.  Variant
 * quirks (a handshake register, gaps that answer) are in the map. */
#include <wattbridge/plugin.h>

#include <math.h>

#ifdef WB_PRESET_DTSU666
#define PLUGIN_NAME "dtsu666"
#define PLUGIN_DESCRIPTION "Emulated CHINT DTSU666 three-phase meter (Modbus RTU or TCP slave; meter-emulator preset)"
#define DEFAULT_MAP "chint-dtsu666"
#else
#define PLUGIN_NAME "meter-emulator"
#define PLUGIN_DESCRIPTION "Serves a register map as an emulated Modbus meter or device, filled from points"
#endif
#define EXCEPTION_NO_DATA 4 /* server device failure: what a meter answers without data */
#define MAX_EXTRA 64        /* measurements beyond the meter quantities a map may serve */

/* The meter measurements, whose relations the emulator knows:
 * "<quantity>[-<channel>]". */
#define PHASED(q) q, q "-l1", q "-l2", q "-l3"
static const char *const key_names[] = {
    PHASED("power"),      PHASED("reactive-power"), PHASED("apparent-power"), PHASED("power-factor"),
    "voltage-l1",         "voltage-l2",             "voltage-l3",             "voltage-l1-l2",
    "voltage-l2-l3",      "voltage-l3-l1",          "current-l1",             "current-l2",
    "current-l3",         "frequency",              PHASED("energy-import"),  PHASED("energy-export"),
    NULL,
};

enum {
    K_P, K_P1, K_P2, K_P3,
    K_Q, K_Q1, K_Q2, K_Q3,
    K_S, K_S1, K_S2, K_S3,
    K_PF, K_PF1, K_PF2, K_PF3,
    K_U1, K_U2, K_U3, K_U12, K_U23, K_U31,
    K_I1, K_I2, K_I3,
    K_F,
    K_EI, K_EI1, K_EI2, K_EI3,
    K_EE, K_EE1, K_EE2, K_EE3,
    N_KEYS
};
G_STATIC_ASSERT(G_N_ELEMENTS(key_names) == N_KEYS + 1);

typedef enum { POLICY_SILENT, POLICY_EXCEPTION, POLICY_ZERO } Policy;
static const char *const policy_names[] = {"silent", "exception", "zero", NULL};

typedef struct {
    int key;
    char *point;
    gboolean seen;
    WbPointState state;
    double value;
    gint64 expires;      /* monotonic time the value goes stale */
} Wire;

/* Known measurements first (K_*), then the map's others (N_KEYS + i). */
typedef struct {
    double v[N_KEYS + MAX_EXTRA];
    gboolean have[N_KEYS + MAX_EXTRA];
} Values;

typedef struct {
    WbInstance *inst;
    WbMap *map;
    WbModbusServer *server;
    GPtrArray *wires;          /* Wire* */
    GHashTable *by_point;      /* point name -> GPtrArray of Wire* (one point may feed several) */
    WbSubscription *sub;
    gint64 max_age;
    gboolean single_phase;
    gboolean reverse;
    Policy on_stale;
    Policy on_invalid;
    double nominal_voltage;
    double nominal_frequency;
    double key_default[N_KEYS + MAX_EXTRA];
    int *reg_key;              /* per map register: key index or -1 */
    GPtrArray *extra_keys;     /* char*: the map's measurements beyond key_names */
    int n_keys;                /* N_KEYS + extra_keys->len */

    double last[N_KEYS + MAX_EXTRA]; /* last served */
    gboolean have_last[N_KEYS + MAX_EXTRA];
    double energy_max[N_KEYS]; /* highest energy served (persisted) */
    gboolean warned_backwards[N_KEYS];
    char *state_file;
    gint64 state_saved;        /* monotonic time of the last save */
    gint64 save_interval;
    gboolean state_dirty;
    GThread *saver;            /* the last save's thread (joined before the next) */
    int mode;                  /* -1 before the first commit */
    char *mode_reason;
} Dtsu;

static const char *const phases_values[] = {"3", "1", NULL};
static const char *const direction_values[] = {"forward", "reverse", NULL};

static const WbOptionSpec options[] = {
    WB_MODBUS_SERVER_OPTIONS,
#ifdef DEFAULT_MAP
    {.name = "map", .type = WB_OPTION_STRING, .default_value = DEFAULT_MAP,
     .help = "The register map served (data/devices/<name>.map or a path)"},
#else
    {.name = "map", .type = WB_OPTION_STRING, .flags = WB_OPTION_REQUIRED,
     .help = "The register map served: a name in data/devices (eastron-sdm630, huawei-dtsu666-h, "
             "chint-dtsu666, ...) or a path to a .map file"},
#endif
    {.name = "point.", .type = WB_OPTION_POINT, .flags = WB_OPTION_FAMILY | WB_OPTION_ONE_POINT,
     .help = "Wires a measurement of the map to a point, e.g. point.power = pv/power or point.voltage-l1 = "
             "pv/l1/voltage.  Measurements are the map's register keys (<quantity>[-<channel>]).  Derived when "
             "not wired: power and reactive-power from their phases (and the phases from the total with "
             "phases = 1), apparent-power(-l1..l3) and power-factor(-l1..l3) from P and Q, voltage-l1-l2, "
             "voltage-l2-l3, voltage-l3-l1 from the phase voltages, current-l1..l3 from apparent power and "
             "voltage; anything else not wired (frequency, the energy counters) serves the map's default"},
    {.name = "phases", .type = WB_OPTION_ENUM, .default_value = "3", .values = phases_values,
     .help = "1: a single-phase source; Pa = Pt and Pb = Pc = 0"},
    {.name = "direction", .type = WB_OPTION_ENUM, .default_value = "forward", .values = direction_values,
     .help = "forward: positive source power is served as positive Pt and counted in ImpEp; reverse: the "
             "opposite (powers negated, import and export energy swapped)"},
    {.name = "on-stale", .type = WB_OPTION_ENUM, .default_value = "silent", .values = policy_names,
     .help = "When a wired point has had no update for max-age (or never had one): silent = answer "
             "nothing, as a meter without power; exception = answer Modbus exception 04 (server device "
             "failure); zero = serve 0 W and 0 A, keep energy counters, keep voltages and frequency at their "
             "last valid values"},
    {.name = "on-invalid", .type = WB_OPTION_ENUM, .default_value = "silent", .values = policy_names,
     .help = "When a wired point is invalid (the source says there is no value): silent, exception (04) or "
             "zero, as for on-stale"},
    {.name = "max-age", .type = WB_OPTION_DURATION, .default_value = "30s", .min = 0.05, .max = 86400,
     .unit = "s", .help = "How old a wired point may get before it counts as stale"},
    {.name = "nominal-voltage", .type = WB_OPTION_DOUBLE, .default_value = "230", .min = 50, .max = 500,
     .unit = "V", .help = "Phase voltage served when no voltage is wired (line voltages: x sqrt(3)); currents "
                          "are derived (I = S / U) from wired voltages only"},
    {.name = "nominal-frequency", .type = WB_OPTION_DOUBLE, .default_value = "50", .min = 40, .max = 70,
     .unit = "Hz", .help = "Frequency served when none is wired"},
    {.name = "state-save-interval", .type = WB_OPTION_DURATION, .default_value = "5min", .min = 0.01,
     .max = 86400, .unit = "s",
     .help = "How often a rising energy counter is saved to the state directory (also saved at stop)"},
    {.name = "register.", .type = WB_OPTION_DOUBLE, .flags = WB_OPTION_FAMILY,
     .help = "Overrides a parameter register by its maker's name, e.g. register.B.LCD = 0xA7 (the meter "
             "type a Solax inverter looks for)"},
    {NULL},
};

static int key_index(Dtsu *d, const char *name)
{
    for (int k = 0; k < N_KEYS; k++)
        if (strcmp(key_names[k], name) == 0)
            return k;
    for (guint i = 0; i < d->extra_keys->len; i++)
        if (strcmp(g_ptr_array_index(d->extra_keys, i), name) == 0)
            return N_KEYS + (int)i;
    return -1;
}

static const char *key_name(Dtsu *d, int k)
{
    return k < N_KEYS ? key_names[k] : g_ptr_array_index(d->extra_keys, k - N_KEYS);
}

/* A power or a current: 0 under the zero policy (not a voltage, a
 * temperature or a state). */
static gboolean flows(const char *key)
{
    return g_str_has_prefix(key, "power") || g_str_has_prefix(key, "current") ||
           g_str_has_prefix(key, "reactive-power") || g_str_has_prefix(key, "apparent-power");
}

/* ---- values ---------------------------------------------------------- */

static void set(Values *m, int k, double v)
{
    m->v[k] = v;
    m->have[k] = TRUE;
}

static void derive(Dtsu *d, Values *m)
{
    static const int phased[][4] = {{K_P, K_P1, K_P2, K_P3}, {K_Q, K_Q1, K_Q2, K_Q3}, {K_S, K_S1, K_S2, K_S3}};

    if (d->single_phase) {
        for (guint i = 0; i < G_N_ELEMENTS(phased); i++) {
            const int *x = phased[i];
            if (m->have[x[0]] && !m->have[x[1]])
                set(m, x[1], m->v[x[0]]);
            if (m->have[x[1]] && !m->have[x[0]])
                set(m, x[0], m->v[x[1]]);
            if (!m->have[x[2]])
                set(m, x[2], 0);
            if (!m->have[x[3]])
                set(m, x[3], 0);
        }
        if (!m->have[K_I2])
            set(m, K_I2, 0);
        if (!m->have[K_I3])
            set(m, K_I3, 0);
    }
    /* totals from the three phases */
    for (guint i = 0; i < 2; i++) {
        const int *x = phased[i];
        if (!m->have[x[0]] && m->have[x[1]] && m->have[x[2]] && m->have[x[3]])
            set(m, x[0], m->v[x[1]] + m->v[x[2]] + m->v[x[3]]);
    }
    /* line voltages from phase voltages 120 degrees apart */
    static const int lines[][3] = {{K_U12, K_U1, K_U2}, {K_U23, K_U2, K_U3}, {K_U31, K_U3, K_U1}};
    for (guint i = 0; i < G_N_ELEMENTS(lines); i++) {
        const int *l = lines[i];
        if (!m->have[l[0]] && m->have[l[1]] && m->have[l[2]]) {
            double a = m->v[l[1]], b = m->v[l[2]];
            set(m, l[0], sqrt(a * a + b * b + a * b));
        }
    }
    /* per-phase apparent power and current from measured data */
    for (int n = 0; n < 3; n++) {
        int p = K_P1 + n, q = K_Q1 + n, s = K_S1 + n, u = K_U1 + n, c = K_I1 + n;
        if (!m->have[s] && m->have[p])
            set(m, s, hypot(m->v[p], m->have[q] ? m->v[q] : 0));
        if (!m->have[c] && m->have[s] && m->have[u] && m->v[u] > 0)
            set(m, c, m->v[s] / m->v[u]);
    }
    gboolean phases_s = m->have[K_S1] && m->have[K_S2] && m->have[K_S3];

    /* what physics cannot give: the map's declared default */
    for (int k = 0; k < d->n_keys; k++)
        if (!m->have[k] && !(k >= K_S && k <= K_PF3))
            set(m, k, d->key_default[k]);

    for (int n = 0; n < 3; n++)
        if (!m->have[K_S1 + n])
            set(m, K_S1 + n, hypot(m->v[K_P1 + n], m->v[K_Q1 + n]));
    if (!m->have[K_S])
        set(m, K_S, phases_s ? m->v[K_S1] + m->v[K_S2] + m->v[K_S3] : hypot(m->v[K_P], m->v[K_Q]));
    for (int n = 0; n < 4; n++) {
        int p = K_P + n, s = K_S + n, pf = K_PF + n;
        if (!m->have[pf])
            set(m, pf, m->v[s] > 0 ? CLAMP(m->v[p] / m->v[s], -1.0, 1.0) : 1.0);
    }
}

/* ---- state file: the highest energy served ---------------------------- */

static void state_load(Dtsu *d)
{
    g_autoptr(GError) error = NULL;
    const char *dir = wb_instance_state_dir(d->inst, &error);
    if (!dir) {
        wb_log(d->inst, WB_LOG_WARNING, "%s; energy counters will not be kept across restarts", error->message);
        return;
    }
    d->state_file = g_build_filename(dir, "energy.ini", NULL);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (!g_key_file_load_from_file(kf, d->state_file, G_KEY_FILE_NONE, &error)) {
        if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            wb_log(d->inst, WB_LOG_WARNING, "%s: %s; starting the energy counters afresh", d->state_file,
                   error->message);
        return;
    }
    for (int k = K_EI; k <= K_EE3; k++) {
        g_autoptr(GError) kerr = NULL;
        double v = g_key_file_get_double(kf, "energy", key_names[k], &kerr);
        if (!kerr && isfinite(v) && v >= 0)
            d->energy_max[k] = v;
    }
}

static GBytes *state_serialize(Dtsu *d)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_key_file_set_comment(kf, NULL, NULL,
                           " The highest energy counters this emulated meter has served, in kWh. Delete this "
                           "file to serve a replaced source's counters from scratch.",
                           NULL);
    for (int k = K_EI; k <= K_EE3; k++)
        if (d->energy_max[k] > 0)
            g_key_file_set_double(kf, "energy", key_names[k], d->energy_max[k]);
    gsize len = 0;
    char *data = g_key_file_to_data(kf, &len, NULL);
    return g_bytes_new_take(data, len);
}

typedef struct {
    WbInstance *inst;
    char *path;
    GBytes *bytes;
} SaveJob;

/* The plugin's own thread: it may only log (host thread rules). */
static gpointer save_thread(gpointer data)
{
    SaveJob *job = data;
    gsize len = 0;
    const char *bytes = g_bytes_get_data(job->bytes, &len);
    g_autoptr(GError) error = NULL;
    if (!g_file_set_contents_full(job->path, bytes, (gssize)len, G_FILE_SET_CONTENTS_CONSISTENT, 0640, &error))
        wb_log_ratelimited(job->inst, WB_LOG_WARNING, "state-save", "cannot save %s: %s", job->path, error->message);
    g_free(job->path);
    g_bytes_unref(job->bytes);
    g_free(job);
    return NULL;
}

/* Saves the counters without blocking the main loop: an SD card's fsync
 * can take long.  The file is replaced atomically. */
static void state_save(Dtsu *d, gboolean wait)
{
    if (d->saver) {
        g_thread_join(d->saver); /* the previous save, minutes ago */
        d->saver = NULL;
    }
    if (!d->state_file || !d->state_dirty)
        return;
    SaveJob *job = g_new0(SaveJob, 1);
    job->inst = d->inst;
    job->path = g_strdup(d->state_file);
    job->bytes = state_serialize(d);
    d->saver = g_thread_new("wb-dtsu666-save", save_thread, job);
    d->state_dirty = FALSE;
    d->state_saved = g_get_monotonic_time();
    if (wait) {
        g_thread_join(d->saver);
        d->saver = NULL;
    }
}

/* ---- the image --------------------------------------------------------- */

static void set_mode(Dtsu *d, int mode, const char *reason)
{
    static const char *const what[] = {"serving measurements", "silent", "answering exception 04"};
    if (d->mode != mode || g_strcmp0(d->mode_reason, reason) != 0) {
        /* losing data while serving is worth a warning; waiting for the
         * first data at start-up is not */
        if (d->mode != mode)
            wb_log(d->inst, d->mode == WB_MODBUS_SERVE ? WB_LOG_WARNING : WB_LOG_NOTICE, "%s%s%s", what[mode],
                   reason ? ": " : "", reason ? reason : "");
        else if (reason)
            wb_log(d->inst, WB_LOG_INFO, "still %s: %s", what[mode], reason);
        g_free(d->mode_reason);
        d->mode_reason = g_strdup(reason);
    }
    d->mode = mode;
    wb_modbus_server_set_mode(d->server, (WbModbusServerMode)mode, EXCEPTION_NO_DATA);
}

static void refresh(Dtsu *d)
{
    Values m = {0};
    const Wire *stale = NULL, *invalid = NULL;

    for (guint i = 0; i < d->wires->len; i++) {
        const Wire *w = g_ptr_array_index(d->wires, i);
        if (!w->seen || w->state == WB_POINT_STALE) {
            if (!stale)
                stale = w;
        } else if (w->state == WB_POINT_INVALID) {
            if (!invalid)
                invalid = w;
        } else {
            int k = w->key;
            double v = w->value;
            if (d->reverse) {
                if (k <= K_Q3 || (k >= K_PF && k <= K_PF3))
                    v = -v;
                else if (k >= K_EI && k <= K_EI3)
                    k += K_EE - K_EI;
                else if (k >= K_EE && k <= K_EE3)
                    k -= K_EE - K_EI;
            }
            set(&m, k, v);
        }
    }

    Policy policy = POLICY_SILENT;
    g_autofree char *reason = NULL;
    if (stale || invalid) {
        /* A stale wire decides, unless the invalid one asks for more caution
         * (no numbers at all rather than zeros). */
        gboolean use_stale = stale && !(invalid && d->on_stale == POLICY_ZERO && d->on_invalid != POLICY_ZERO);
        const Wire *w = use_stale ? stale : invalid;
        policy = use_stale ? d->on_stale : d->on_invalid;
        reason = g_strdup_printf("%s is %s (%s = %s)", w->point,
                                 use_stale ? (w->seen ? "stale" : "not published yet") : "invalid",
                                 use_stale ? "on-stale" : "on-invalid", policy_names[policy]);
        wb_modbus_server_set_valid_until(d->server, 0, WB_MODBUS_SILENT, 0);
        if (policy != POLICY_ZERO) {
            set_mode(d, policy == POLICY_SILENT ? WB_MODBUS_SILENT : WB_MODBUS_EXCEPTION, reason);
            wb_modbus_server_commit(d->server);
            return;
        }
        /* zero: no power, no current; counters, voltages and frequency as last served */
        memset(&m, 0, sizeof m);
        for (int k = K_P; k <= K_Q3; k++)
            set(&m, k, 0);
        for (int k = K_I1; k <= K_I3; k++)
            set(&m, k, 0);
        for (int k = K_U1; k <= K_F; k++)
            if (d->have_last[k] && !(k >= K_I1 && k <= K_I3))
                set(&m, k, d->last[k]);
        for (int k = K_EI; k <= K_EE3; k++)
            if (d->have_last[k])
                set(&m, k, d->last[k]);
        for (int k = N_KEYS; k < d->n_keys; k++) {
            if (flows(key_name(d, k)))
                set(&m, k, 0);
            else if (d->have_last[k])
                set(&m, k, d->last[k]);
        }
    }

    gboolean data[N_KEYS];
    memcpy(data, m.have, sizeof data);
    derive(d, &m);

    for (int k = K_EI; k <= K_EE3; k++) {
        if (!data[k])
            continue;
        if (m.v[k] + 1e-9 < d->energy_max[k]) {
            if (!d->warned_backwards[k])
                wb_log(d->inst, WB_LOG_WARNING,
                       "%s went backwards (%.3f kWh < %.3f kWh served before); serving %.3f kWh until the source "
                       "catches up (delete %s if the source was replaced)",
                       key_names[k], m.v[k], d->energy_max[k], d->energy_max[k],
                       d->state_file ? d->state_file : "the state file");
            d->warned_backwards[k] = TRUE;
            m.v[k] = d->energy_max[k];
        } else if (m.v[k] > d->energy_max[k]) {
            d->energy_max[k] = m.v[k];
            d->warned_backwards[k] = FALSE;
            d->state_dirty = TRUE;
        }
    }

    guint n = wb_map_get_n_registers(d->map);
    for (guint i = 0; i < n; i++) {
        int k = d->reg_key[i];
        if (k < 0)
            continue;
        const WbMapRegister *reg = wb_map_get_register(d->map, i);
        g_autoptr(GError) error = NULL;
        if (!wb_modbus_server_set_value(d->server, reg, m.v[k], &error))
            wb_log_ratelimited(d->inst, WB_LOG_WARNING, key_name(d, k), "cannot serve %s: %s", key_name(d, k),
                               error->message);
    }
    for (int k = 0; k < d->n_keys; k++) {
        d->last[k] = m.v[k];
        d->have_last[k] = TRUE;
    }
    if (!reason) {
        /* measurements: if the main loop stalls past their freshness (plus
         * half a max-age of grace for the stale timer), the serving thread
         * stops presenting them by itself */
        gint64 deadline = G_MAXINT64;
        for (guint i = 0; i < d->wires->len; i++)
            deadline = MIN(deadline, ((Wire *)g_ptr_array_index(d->wires, i))->expires);
        if (deadline != G_MAXINT64)
            wb_modbus_server_set_valid_until(d->server, deadline + d->max_age / 2,
                                             d->on_stale == POLICY_EXCEPTION ? WB_MODBUS_EXCEPTION : WB_MODBUS_SILENT,
                                             EXCEPTION_NO_DATA);
    }
    set_mode(d, WB_MODBUS_SERVE, reason);
    wb_modbus_server_commit(d->server);

    if (d->state_dirty && g_get_monotonic_time() - d->state_saved >= d->save_interval)
        state_save(d, FALSE);
}

static void on_point(const WbPoint *point, WbPointState state, gpointer user_data)
{
    Dtsu *d = user_data;
    GPtrArray *wires = g_hash_table_lookup(d->by_point, wb_point_get_name(point));
    for (guint i = 0; wires && i < wires->len; i++) {
        Wire *w = g_ptr_array_index(wires, i);
        w->seen = TRUE;
        w->state = state;
        if (state != WB_POINT_STALE) {
            w->expires = g_get_monotonic_time() - wb_point_get_age(point) + d->max_age;
            if (wb_point_is_string(point))
                w->state = WB_POINT_INVALID; /* a text point cannot feed a measurement */
            else
                w->value = wb_point_get_double(point);
        }
    }
}

static void on_batch_end(gpointer user_data)
{
    refresh(user_data);
}

/* ---- lifecycle --------------------------------------------------------- */

static void wire_free(gpointer data)
{
    Wire *w = data;
    g_free(w->point);
    g_free(w);
}

static void dtsu_free(Dtsu *d)
{
    if (d->map)
        wb_map_unref(d->map);
    if (d->wires)
        g_ptr_array_unref(d->wires);
    if (d->by_point)
        g_hash_table_unref(d->by_point);
    g_free(d->reg_key);
    if (d->extra_keys)
        g_ptr_array_unref(d->extra_keys);
    g_free(d->state_file);
    g_free(d->mode_reason);
    g_free(d);
}

static double resolve_default(Dtsu *d, const char *text)
{
    if (!text)
        return 0;
    if (strcmp(text, "nominal-voltage") == 0)
        return d->nominal_voltage;
    if (strcmp(text, "nominal-line-voltage") == 0)
        return d->nominal_voltage * sqrt(3.0);
    if (strcmp(text, "nominal-frequency") == 0)
        return d->nominal_frequency;
    return g_ascii_strtod(text, NULL);
}

static gboolean dtsu_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Dtsu *d = g_new0(Dtsu, 1);
    d->inst = instance;
    d->mode = -1;
    d->single_phase = wb_config_get_enum(config, "phases") == 1;
    d->reverse = wb_config_get_enum(config, "direction") == 1;
    d->on_stale = (Policy)wb_config_get_enum(config, "on-stale");
    d->on_invalid = (Policy)wb_config_get_enum(config, "on-invalid");
    d->max_age = wb_config_get_duration(config, "max-age");
    d->nominal_voltage = wb_config_get_double(config, "nominal-voltage");
    d->nominal_frequency = wb_config_get_double(config, "nominal-frequency");
    d->save_interval = wb_config_get_duration(config, "state-save-interval");
    d->wires = g_ptr_array_new_with_free_func(wire_free);
    d->by_point = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
    d->extra_keys = g_ptr_array_new_with_free_func(g_free);

    d->map = wb_map_load(instance, wb_config_get_string(config, "map"), error);
    if (!d->map) {
        dtsu_free(d);
        return FALSE;
    }
    /* the map's measurements beyond the meter quantities */
    g_autoptr(GHashTable) in_map = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < wb_map_get_n_registers(d->map); i++) {
        const char *key = wb_map_register_get_key(wb_map_get_register(d->map, i));
        if (!key || key_index(d, key) >= 0)
            continue;
        {
            if (d->extra_keys->len == MAX_EXTRA) {
                g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_NOT_SUPPORTED,
                            "%s measures more than %d kinds of values beyond a meter's", wb_map_get_name(d->map),
                            MAX_EXTRA);
                dtsu_free(d);
                return FALSE;
            }
            g_ptr_array_add(d->extra_keys, g_strdup(key));
        }
    }
    for (guint i = 0; i < wb_map_get_n_registers(d->map); i++) {
        const char *key = wb_map_register_get_key(wb_map_get_register(d->map, i));
        if (key)
            g_hash_table_add(in_map, (gpointer)key);
    }
    /* what it serves, for messages: the meter quantities in their order, then the rest */
    g_autoptr(GString) served = g_string_new(NULL);
    for (int k = 0; k < N_KEYS + (int)d->extra_keys->len; k++)
        if (g_hash_table_contains(in_map, key_name(d, k)))
            g_string_append_printf(served, "%s%s", served->len ? ", " : "", key_name(d, k));
    d->n_keys = N_KEYS + (int)d->extra_keys->len;
    for (const char *const *key = wb_config_get_family(config, "point."); *key; key++) {
        const char *name = *key + strlen("point.");
        const char *point = wb_config_get_string(config, *key);
        int k = key_index(d, name);
        if (k < 0) {
            wb_config_set_error(config, error, *key, "%s serves no measurement '%s'; it serves: %s",
                                wb_map_get_name(d->map), name, served->str);
            dtsu_free(d);
            return FALSE;
        }
        Wire *w = g_new0(Wire, 1);
        w->key = k;
        w->point = g_strdup(point);
        g_ptr_array_add(d->wires, w);
        GPtrArray *same = g_hash_table_lookup(d->by_point, w->point);
        if (!same) {
            same = g_ptr_array_new();
            g_hash_table_insert(d->by_point, w->point, same);
        }
        g_ptr_array_add(same, w);
    }

    guint n = wb_map_get_n_registers(d->map);
    d->reg_key = g_new(int, n);
    gboolean have_default[N_KEYS + MAX_EXTRA] = {0};
    for (guint i = 0; i < n; i++) {
        const WbMapRegister *reg = wb_map_get_register(d->map, i);
        const char *key = wb_map_register_get_key(reg);
        d->reg_key[i] = key ? key_index(d, key) : -1;
        int k = d->reg_key[i];
        if (k >= 0 && !have_default[k]) {
            d->key_default[k] = resolve_default(d, wb_map_register_get_default(reg));
            have_default[k] = TRUE;
        }
    }

    d->server = wb_modbus_server_new(instance, d->map, error);
    if (!d->server) {
        dtsu_free(d);
        return FALSE;
    }
    for (const char *const *key = wb_config_get_family(config, "register."); *key; key++) {
        const char *name = *key + strlen("register.");
        const WbMapRegister *reg = wb_map_find_register(d->map, name);
        g_autoptr(GError) verr = NULL;
        if (!reg || wb_map_register_get_quantity(reg)) {
            wb_config_set_error(config, error, *key,
                                "%s is not a parameter register of %s (measured registers are wired with point.)",
                                name, wb_map_get_name(d->map));
            wb_modbus_server_free(d->server);
            dtsu_free(d);
            return FALSE;
        }
        if (!wb_modbus_server_set_value(d->server, reg, wb_config_get_double(config, *key), &verr)) {
            wb_config_set_error(config, error, *key, "%s", verr->message);
            wb_modbus_server_free(d->server);
            dtsu_free(d);
            return FALSE;
        }
    }
    *state = d;
    return TRUE;
}

static gboolean dtsu_start(gpointer state, GError **error)
{
    Dtsu *d = state;
    state_load(d);
    /* The counters served before the restart are what the zero policy keeps
     * serving until data comes (never 0, never lower). */
    for (guint i = 0; i < d->wires->len; i++) {
        int k = ((Wire *)g_ptr_array_index(d->wires, i))->key;
        if (d->reverse && k >= K_EI && k <= K_EE3)
            k = k <= K_EI3 ? k + (K_EE - K_EI) : k - (K_EE - K_EI);
        if (k >= K_EI && k <= K_EE3 && d->energy_max[k] > 0) {
            d->last[k] = d->energy_max[k];
            d->have_last[k] = TRUE;
        }
    }
    refresh(d); /* nothing published yet: the on-stale policy decides */
    if (!wb_modbus_server_start(d->server, error))
        return FALSE;
    /* one subscription for every wired point: one commit per batch */
    for (guint i = 0; i < d->wires->len; i++) {
        Wire *w = g_ptr_array_index(d->wires, i);
        if (!d->sub)
            d->sub = wb_subscribe(d->inst, w->point, d->max_age, on_point, on_batch_end, d);
        else
            wb_subscription_add_pattern(d->sub, w->point);
    }
    return TRUE;
}

static void dtsu_stop(gpointer state)
{
    Dtsu *d = state;
    wb_subscription_free(d->sub);
    d->sub = NULL;
    wb_modbus_server_free(d->server);
    d->server = NULL;
    state_save(d, TRUE); /* and join any save still running */
}

static void dtsu_destroy(gpointer state)
{
    Dtsu *d = state;
    if (d->server)
        wb_modbus_server_free(d->server);
    dtsu_free(d);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = dtsu_create,
    .start = dtsu_start,
    .stop = dtsu_stop,
    .destroy = dtsu_destroy,
};

WB_PLUGIN_DEFINE(PLUGIN_NAME, WB_VERSION, PLUGIN_DESCRIPTION, "GPL-3.0-or-later", WB_ROLE_SINK, options, &ops)
