/* modbus-device: reads a Modbus device described by a register map, and
 * writes its setpoint registers (source + actuator).
 *
 * Registers are read in three rate groups (fast, slow, and once per
 * connection), each with a read plan from the map, and published as points
 * in quantities.h's units and signs: a register's quantity names its point
 * ("power", "l1/voltage"), its sign is converted from the device's
 * convention (the map's direction) to the instance's role, and registers
 * without a quantity are published as register/<name>.
 *
 * A writable register can take a setpoint point.  It is written only when
 * the setpoint differs from what the device reports (read in the fast
 * group), within the map's range, at most once per min-write-interval; a
 * stale, invalid or out-of-range setpoint, and the daemon stopping, write
 * the required fallback instead.  A device that forgot a setting (a
 * Growatt inverter resets its power limit to 255 when it powers down at
 * night) is therefore set again once it answers. */
#include <wattbridge/plugin.h>

#include <math.h>

enum { ROLE_GRID, ROLE_PV, ROLE_LOAD, ROLE_BATTERY };
static const char *const role_names[] = {"grid", "pv", "load", "battery", NULL};
/* > 0: the role's positive power flows into the device from the grid
 * side (grid import, load consumption, battery charge); < 0: out of it
 * (PV production).  Map directions in the same terms, by WbMapDirection. */
static const int role_sign[] = {+1, -1, +1, +1};
static const int direction_sign[] = {+1 /* import */, -1 /* export */, -1 /* production */,
                                     +1 /* consumption */, +1 /* charge */, -1 /* discharge */};

enum { GROUP_FAST, GROUP_SLOW, GROUP_CONNECT, N_GROUPS };
static const char *const group_names[] = {"fast", "slow", "connect"};

typedef struct {
    const WbMapRegister *reg;
    char *point;          /* name without the instance prefix */
    int sign;             /* +1 or -1 for power-like quantities */
    guint request;        /* index in the group's plan */
    guint offset;         /* words into that request's answer */
} Read;

typedef struct _Device Device;

typedef struct {
    Device *dev;
    int id;
    GArray *reads;        /* Read */
    WbReadPlan *plan;
    WbTimer *timer;
    gint64 interval;
    gboolean busy;        /* a job is out */
    gint64 submitted;     /* monotonic, of the job out */
    guint overruns;
} Group;

typedef struct {
    Device *dev;
    const WbMapRegister *reg;
    char *point;          /* the setpoint's point */
    double fallback;
    gint64 min_interval;
    WbPointState state;
    gboolean seen;
    double setpoint;
    gboolean have_readback;
    guint16 readback[4];
    gint64 last_write;    /* monotonic; 0: never */
    gboolean writing;
    guint request;        /* of the write job out */
    gboolean using_fallback;
    char *why_fallback;
} Setpoint;

struct _Device {
    WbInstance *inst;
    const WbConfig *config;
    WbMap *map;
    WbModbusDevice *modbus;
    int role;
    Group groups[N_GROUPS];
    GPtrArray *setpoints; /* Setpoint* */
    WbSubscription *sub;
    gint64 max_age;
    gboolean running;
};

static const WbOptionSpec options[] = {
    WB_MODBUS_DEVICE_OPTIONS,
    {.name = "map", .type = WB_OPTION_STRING, .flags = WB_OPTION_REQUIRED,
     .help = "The device's register map: a name in data/devices (growatt-min-tl-x) or a path to a .map file"},
    {.name = "role", .type = WB_OPTION_ENUM, .flags = WB_OPTION_REQUIRED, .values = role_names,
     .help = "What the device measures, for the sign of its power: grid (> 0 import), pv (> 0 production), "
             "load (> 0 consumption), battery (> 0 charging). A meter on a PV inverter's line is role = pv"},
    {.name = "fast", .type = WB_OPTION_LIST,
     .help = "Registers read every fast-interval, by the maker's name (Pac; Vac1), or NAME@ADDRESS (the wire "
             "address) when a name repeats; setpoint registers are added"},
    {.name = "fast-interval", .type = WB_OPTION_DURATION, .default_value = "1s", .min = 0.01, .max = 86400,
     .unit = "s", .help = "How often the fast registers are read"},
    {.name = "slow", .type = WB_OPTION_LIST, .help = "Registers read every slow-interval (energy counters)"},
    {.name = "slow-interval", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 0.01, .max = 86400,
     .unit = "s", .help = "How often the slow registers are read"},
    {.name = "connect", .type = WB_OPTION_LIST,
     .help = "Registers read once each time the device starts answering (identity, ratings)"},
    {.name = "setpoint.", .type = WB_OPTION_POINT, .flags = WB_OPTION_FAMILY | WB_OPTION_ONE_POINT,
     .help = "Writes the register named by the key from this point, e.g. setpoint.ActivePRate = ctl/limit; "
             "needs fallback.<register>"},
    {.name = "fallback.", .type = WB_OPTION_DOUBLE, .flags = WB_OPTION_FAMILY,
     .help = "The value a setpoint register gets when its point is stale, invalid or out of range, and when "
             "the daemon stops (e.g. fallback.ActivePRate = 100)"},
    {.name = "min-write-interval", .type = WB_OPTION_DURATION, .min = 0.01, .max = 86400, .unit = "s",
     .help = "At most one write per setpoint register this often; default 60 s for registers the map marks "
             "flash (kept in non-volatile memory), 1 s for others"},
    {.name = "max-age", .type = WB_OPTION_DURATION, .default_value = "30s", .min = 0.05, .max = 86400,
     .unit = "s", .help = "How old a setpoint point may get before the fallback is written"},
    {NULL},
};

/* ---- names ------------------------------------------------------------------- */

static char *point_name_for(const WbMapRegister *reg)
{
    const char *q = wb_map_register_get_quantity(reg);
    const char *ch = wb_map_register_get_channel(reg);
    if (q)
        return ch ? g_strdup_printf("%s/%s", ch, q) : g_strdup(q);
    /* register/<maker's name>, made a valid point level */
    char *name = g_strdup_printf("register/%s", wb_map_register_get_name(reg));
    for (char *c = name + strlen("register/"); *c; c++)
        if (!g_ascii_isalnum(*c) && *c != '_' && *c != '.' && *c != '-')
            *c = '_';
    return name;
}

/* NAME, or NAME@ADDRESS (its wire address, decimal or 0x) when the map
 * has the name more than once (the DTSU666 serves Ua in two blocks). */
static const WbMapRegister *find_register(Device *d, const char *key, const char *spec, GError **error)
{
    g_autofree char *name = g_strdup(spec);
    char *at = strchr(name, '@');
    gint64 want = -1;
    if (at) {
        *at = '\0';
        char *end = NULL;
        want = (gint64)g_ascii_strtoull(at + 1, &end, 0);
        if (!end || *end || end == at + 1) {
            wb_config_set_error(d->config, error, key, "expected NAME or NAME@ADDRESS, got \"%s\"", spec);
            return NULL;
        }
    }
    const WbMapRegister *found = NULL;
    g_autoptr(GString) all = g_string_new(NULL);
    guint matches = 0;
    for (guint i = 0; i < wb_map_get_n_registers(d->map); i++) {
        const WbMapRegister *r = wb_map_get_register(d->map, i);
        if (strcmp(wb_map_register_get_name(r), name) != 0)
            continue;
        g_string_append_printf(all, "%s%s@0x%04X", matches ? ", " : "", name, wb_map_register_get_address(r));
        matches++;
        if (want < 0 || (gint64)wb_map_register_get_address(r) == want)
            found = r;
    }
    if (!matches) {
        wb_config_set_error(d->config, error, key, "%s has no register %s (see wattbridge --check-map %s)",
                            wb_map_get_name(d->map), name, wb_map_get_name(d->map));
        return NULL;
    }
    if (want < 0 && matches > 1) {
        wb_config_set_error(d->config, error, key, "%s names %u registers of %s: say which (%s)", name, matches,
                            wb_map_get_name(d->map), all->str);
        return NULL;
    }
    if (!found) {
        wb_config_set_error(d->config, error, key, "%s has no %s at %s; it has %s", wb_map_get_name(d->map), name,
                            at + 1, all->str);
        return NULL;
    }
    return found;
}

static int sign_for(Device *d, const WbMapRegister *reg)
{
    const char *q = wb_map_register_get_quantity(reg);
    if (!q || (strcmp(q, "power") != 0 && strcmp(q, "reactive-power") != 0 && strcmp(q, "power-factor") != 0 &&
               strcmp(q, "energy-import") != 0 && strcmp(q, "energy-export") != 0))
        return 1;
    int dir = wb_map_register_get_direction(reg);
    if (dir < 0)
        dir = wb_map_get_direction(d->map);
    if (dir < 0)
        return 1; /* the map states no convention: taken as the role's */
    return direction_sign[dir] * role_sign[d->role];
}

/* ---- publishing --------------------------------------------------------------- */

static void publish_group(Group *g, WbModbusJob *job)
{
    Device *d = g->dev;
    WbBatch *batch = wb_batch_new(d->inst);
    wb_batch_set_time(batch, wb_modbus_job_get_time(job));
    guint published = 0;
    for (guint i = 0; i < g->reads->len; i++) {
        const Read *r = &g_array_index(g->reads, Read, i);
        const guint16 *words = wb_modbus_job_get_words(job, r->request);
        if (!words)
            continue; /* not read this time: the point ages */
        words += r->offset;
        const WbMapRegister *reg = r->reg;
        published++;
        if (wb_map_register_is_string(reg)) {
            g_autofree char *text = wb_map_register_decode_string(reg, words);
            wb_batch_add_string(batch, r->point, text);
            continue;
        }
        double v = wb_map_register_decode(reg, words); /* NaN (a float with no value) publishes invalid */
        const char *named = v >= 0 && v == floor(v) ? wb_map_register_get_value_name(reg, (guint64)v) : NULL;
        const char *q = wb_map_register_get_quantity(reg);
        if (named && g_strcmp0(q, "state") == 0) {
            wb_batch_add_string(batch, r->point, named);
            continue;
        }
        if (r->sign < 0 && q && strncmp(q, "energy-", 7) != 0)
            v = -v; /* energies swap names instead (see create) */
        if (v == 0)
            v = 0; /* no -0 */
        wb_batch_add_double(batch, r->point, v, q ? NULL : wb_map_register_get_unit(reg));
    }
    if (published)
        wb_batch_commit(batch);
    else
        wb_batch_discard(batch);
}

/* ---- setpoints ------------------------------------------------------------------ */

/* "50 %", "1111": a register's value for a log message. */
static char *value_text(const WbMapRegister *reg, double v)
{
    const char *unit = wb_map_register_get_unit(reg);
    return g_strdup_printf("%g%s%s", v, *unit ? " " : "", unit);
}

static void on_write_done(WbModbusJob *job, gpointer user_data);

/* Compares each setpoint with what the device reported and writes those
 * that differ, in one job (contiguous registers share a request). */
static void actuate(Device *d)
{
    gint64 now = g_get_monotonic_time();
    g_autoptr(GPtrArray) regs = g_ptr_array_new();
    g_autoptr(GPtrArray) which = g_ptr_array_new();
    guint16 values[64][4];
    for (guint i = 0; i < d->setpoints->len && regs->len < G_N_ELEMENTS(values); i++) {
        Setpoint *s = g_ptr_array_index(d->setpoints, i);
        if (!s->have_readback || s->writing)
            continue;
        const char *why = NULL;
        double want = s->setpoint;
        if (!s->seen)
            why = "not published yet";
        else if (s->state == WB_POINT_STALE)
            why = "stale";
        else if (s->state == WB_POINT_INVALID)
            why = "invalid";
        guint16 words[4] = {0};
        g_autoptr(GError) error = NULL;
        double min, max;
        if (!why && wb_map_register_get_range(s->reg, &min, &max) && (want < min || want > max))
            why = "out of range";
        if (!why && !wb_map_register_encode(s->reg, want, words, &error))
            why = "out of range";
        if (why) {
            want = s->fallback;
            if (!s->using_fallback || g_strcmp0(s->why_fallback, why) != 0) {
                g_autofree char *fb = value_text(s->reg, want);
                wb_log(d->inst, WB_LOG_WARNING, "setpoint %s is %s%s%s: %s gets its fallback %s", s->point, why,
                       error ? ": " : "", error ? error->message : "", wb_map_register_get_name(s->reg), fb);
            }
            s->using_fallback = TRUE;
            g_free(s->why_fallback);
            s->why_fallback = g_strdup(why);
            g_clear_error(&error);
            wb_map_register_encode(s->reg, want, words, NULL); /* checked in create */
        } else if (s->using_fallback) {
            g_autofree char *v = value_text(s->reg, want);
            wb_log(d->inst, WB_LOG_NOTICE, "setpoint %s is valid again (%s)", s->point, v);
            s->using_fallback = FALSE;
            g_clear_pointer(&s->why_fallback, g_free);
        }
        guint n = wb_map_register_get_size(s->reg);
        if (memcmp(words, s->readback, n * sizeof(guint16)) == 0)
            continue; /* the device has it */
        if (s->last_write && now - s->last_write < s->min_interval)
            continue; /* written recently: flash wears, a device may need time */
        memcpy(values[regs->len], words, sizeof words);
        g_ptr_array_add(regs, (gpointer)s->reg);
        g_ptr_array_add(which, s);
    }
    if (!regs->len)
        return;
    g_autoptr(GError) error = NULL;
    WbWritePlan *plan = wb_write_plan_new(d->map, (const WbMapRegister *const *)regs->pdata, regs->len, &error);
    if (!plan) {
        wb_log_ratelimited(d->inst, WB_LOG_ERROR, "write-plan", "cannot write: %s", error->message);
        return;
    }
    WbModbusJob *job = wb_modbus_job_new(d->modbus);
    for (guint q = 0; q < wb_write_plan_get_n_requests(plan); q++) {
        guint fc, addr, count;
        wb_write_plan_get_request(plan, q, &fc, &addr, &count);
        guint16 words[123];
        /* gather the words of the registers the request covers, in order */
        for (guint i = 0; i < regs->len; i++) {
            const WbMapRegister *reg = g_ptr_array_index(regs, i);
            guint a = wb_map_register_get_address(reg), n = wb_map_register_get_size(reg);
            for (guint w = 0; w < n; w++) {
                if (a + w >= addr && a + w < addr + count) {
                    words[a + w - addr] = values[i][w];
                    ((Setpoint *)g_ptr_array_index(which, i))->request = q;
                }
            }
        }
        wb_modbus_job_add_write(job, fc, addr, count, words);
    }
    wb_write_plan_free(plan);
    for (guint i = 0; i < which->len; i++) {
        Setpoint *s = g_ptr_array_index(which, i);
        s->writing = TRUE;
        s->last_write = now;
        g_autofree char *v = value_text(s->reg, wb_map_register_decode(s->reg, values[i]));
        g_autofree char *was = value_text(s->reg, wb_map_register_decode(s->reg, s->readback));
        wb_log(d->inst, WB_LOG_NOTICE, "writing %s = %s (the device has %s)", wb_map_register_get_name(s->reg), v,
               was);
    }
    wb_modbus_job_submit(job, on_write_done, g_ptr_array_ref(which), (GDestroyNotify)g_ptr_array_unref);
}

static void on_write_done(WbModbusJob *job, gpointer user_data)
{
    GPtrArray *which = user_data;
    for (guint i = 0; i < which->len; i++) {
        Setpoint *s = g_ptr_array_index(which, i);
        s->writing = FALSE;
        s->have_readback = FALSE; /* wait for the device's word on it */
    }
    for (guint q = 0; q < wb_modbus_job_get_n_requests(job); q++) {
        guint code = 0;
        WbModbusStatus st = wb_modbus_job_get_status(job, q, &code);
        if (st == WB_MODBUS_STATUS_OK)
            continue;
        /* the requests are the write plan's, in the order it made them: the
         * registers of this one are those it covers */
        for (guint i = 0; i < which->len; i++) {
            Setpoint *s = g_ptr_array_index(which, i);
            if (s->request != q)
                continue;
            if (st == WB_MODBUS_STATUS_EXCEPTION)
                wb_log(s->dev->inst, WB_LOG_ERROR, "writing %s failed: exception %u", wb_map_register_get_name(s->reg),
                       code);
            else
                wb_log(s->dev->inst, WB_LOG_WARNING, "writing %s failed: %s", wb_map_register_get_name(s->reg),
                       wb_modbus_status_to_string(st));
        }
    }
}

static void on_setpoint(const WbPoint *point, WbPointState state, gpointer user_data)
{
    Device *d = user_data;
    for (guint i = 0; i < d->setpoints->len; i++) {
        Setpoint *s = g_ptr_array_index(d->setpoints, i);
        if (strcmp(s->point, wb_point_get_name(point)) != 0)
            continue;
        s->seen = TRUE;
        s->state = state;
        if (state == WB_POINT_VALID && wb_point_is_string(point))
            s->state = WB_POINT_INVALID;
        if (s->state == WB_POINT_VALID)
            s->setpoint = wb_point_get_double(point);
    }
}

static void on_setpoint_batch_end(gpointer user_data)
{
    Device *d = user_data;
    if (d->running)
        actuate(d);
}

/* ---- polling ------------------------------------------------------------------ */

static void poll_group(Group *g);

static void on_read_done(WbModbusJob *job, gpointer user_data)
{
    Group *g = user_data;
    Device *d = g->dev;
    g->busy = FALSE;
    wb_log(d->inst, WB_LOG_DEBUG, "%s group: %u requests in %.3f ms", group_names[g->id],
           wb_modbus_job_get_n_requests(job), (double)(g_get_monotonic_time() - g->submitted) / 1000.0);
    for (guint q = 0; q < wb_modbus_job_get_n_requests(job); q++) {
        guint code = 0;
        WbModbusStatus st = wb_modbus_job_get_status(job, q, &code);
        if (st == WB_MODBUS_STATUS_EXCEPTION)
            wb_log_ratelimited(d->inst, WB_LOG_WARNING, group_names[g->id], "%s answers a %s read with exception %u",
                               wb_modbus_device_get_label(d->modbus), group_names[g->id], code);
    }
    publish_group(g, job);
    if (g->id == GROUP_FAST) {
        /* the read-back of every setpoint register read this time */
        for (guint i = 0; i < g->reads->len; i++) {
            const Read *r = &g_array_index(g->reads, Read, i);
            const guint16 *words = wb_modbus_job_get_words(job, r->request);
            for (guint k = 0; words && k < d->setpoints->len; k++) {
                Setpoint *s = g_ptr_array_index(d->setpoints, k);
                if (s->reg == r->reg && !s->writing) {
                    memcpy(s->readback, words + r->offset, wb_map_register_get_size(r->reg) * sizeof(guint16));
                    s->have_readback = TRUE;
                }
            }
        }
        actuate(d);
    }
    if (wb_modbus_job_is_first_answer(job)) {
        /* the device is (back) on the line: what is read once, and the
         * slow group now rather than in a minute */
        for (int k = GROUP_SLOW; k < N_GROUPS; k++)
            if (k != g->id && d->groups[k].plan)
                poll_group(&d->groups[k]);
    }
}

static void poll_group(Group *g)
{
    if (!g->plan || !g->dev->running)
        return;
    if (g->busy) {
        if (g->overruns++ % 60 == 0)
            wb_log(g->dev->inst, WB_LOG_INFO, "the %s group takes longer than its interval; skipping a poll",
                   group_names[g->id]);
        return;
    }
    WbModbusJob *job = wb_modbus_job_new(g->dev->modbus);
    wb_modbus_job_add_read_plan(job, g->plan);
    g->busy = TRUE;
    g->submitted = g_get_monotonic_time();
    wb_modbus_job_submit(job, on_read_done, g, NULL);
}

static void on_timer(gpointer user_data)
{
    poll_group(user_data);
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void setpoint_free(gpointer data)
{
    Setpoint *s = data;
    g_free(s->point);
    g_free(s->why_fallback);
    g_free(s);
}

static void device_free(Device *d)
{
    for (int k = 0; k < N_GROUPS; k++) {
        Group *g = &d->groups[k];
        for (guint i = 0; g->reads && i < g->reads->len; i++)
            g_free(g_array_index(g->reads, Read, i).point);
        if (g->reads)
            g_array_unref(g->reads);
        wb_read_plan_free(g->plan);
    }
    if (d->setpoints)
        g_ptr_array_unref(d->setpoints);
    if (d->map)
        wb_map_unref(d->map);
    g_free(d);
}

static gboolean add_read(Device *d, int group, const char *key, const WbMapRegister *reg, GHashTable *names,
                         GError **error)
{
    Group *g = &d->groups[group];
    for (guint i = 0; i < g->reads->len; i++)
        if (g_array_index(g->reads, Read, i).reg == reg)
            return TRUE; /* listed twice */
    if (!wb_map_register_reads_with(reg, 1) && !wb_map_register_reads_with(reg, 2) &&
        !wb_map_register_reads_with(reg, 3) && !wb_map_register_reads_with(reg, 4)) {
        wb_config_set_error(d->config, error, key, "%s is write-only (access = w) in %s",
                            wb_map_register_get_name(reg), wb_map_get_name(d->map));
        return FALSE;
    }
    Read r = {.reg = reg, .point = point_name_for(reg), .sign = sign_for(d, reg)};
    const char *q = wb_map_register_get_quantity(reg);
    if (r.sign < 0 && q && strncmp(q, "energy-", 7) == 0) {
        /* a counter of the device's import is the role's export */
        const char *ch = wb_map_register_get_channel(reg);
        const char *other = strcmp(q, "energy-import") == 0 ? "energy-export" : "energy-import";
        g_free(r.point);
        r.point = ch ? g_strdup_printf("%s/%s", ch, other) : g_strdup(other);
    }
    const WbMapRegister *before = g_hash_table_lookup(names, r.point);
    if (before && before != reg) {
        wb_config_set_error(d->config, error, key, "%s and %s would both publish %s/%s; read one of them",
                            wb_map_register_get_name(before), wb_map_register_get_name(reg),
                            wb_instance_get_name(d->inst), r.point);
        g_free(r.point);
        return FALSE;
    }
    /* (the same register in two groups, a setpoint's read-back, is fine) */
    g_hash_table_insert(names, g_strdup(r.point), (gpointer)reg);
    g_array_append_val(g->reads, r);
    return TRUE;
}

static gboolean plan_group(Device *d, Group *g, guint baud, GError **error)
{
    if (!g->reads->len)
        return TRUE;
    g_autofree const WbMapRegister **regs = g_new(const WbMapRegister *, g->reads->len);
    for (guint i = 0; i < g->reads->len; i++)
        regs[i] = g_array_index(g->reads, Read, i).reg;
    g->plan = wb_read_plan_new(d->map, regs, g->reads->len, baud, error);
    if (!g->plan)
        return FALSE;
    /* where each register's words are in the answers */
    for (guint i = 0; i < g->reads->len; i++) {
        Read *r = &g_array_index(g->reads, Read, i);
        guint a = wb_map_register_get_address(r->reg), n = wb_map_register_get_size(r->reg);
        guint table = wb_map_register_get_table(r->reg);
        for (guint q = 0; q < wb_read_plan_get_n_requests(g->plan); q++) {
            guint fc, addr, count;
            wb_read_plan_get_request(g->plan, q, &fc, &addr, &count);
            static const guint fc_tables[5] = {0, WB_MAP_COIL, WB_MAP_DISCRETE, WB_MAP_HOLDING, WB_MAP_INPUT};
            gboolean same_table = fc_tables[fc] == table || (fc == 4 && table == WB_MAP_HOLDING);
            if (same_table && a >= addr && a + n <= addr + count) {
                r->request = q;
                r->offset = a - addr;
                break;
            }
        }
    }
    wb_log(d->inst, WB_LOG_INFO, "%s group: %u registers in %u requests, %.3f s a cycle by the map's timing",
           group_names[g->id], g->reads->len, wb_read_plan_get_n_requests(g->plan),
           wb_read_plan_get_cycle_time(g->plan));
    return TRUE;
}

static gboolean device_create(WbInstance *instance, const WbConfig *config, gpointer *state, GError **error)
{
    Device *d = g_new0(Device, 1);
    d->inst = instance;
    d->config = config;
    d->role = wb_config_get_enum(config, "role");
    d->max_age = wb_config_get_duration(config, "max-age");
    d->setpoints = g_ptr_array_new_with_free_func(setpoint_free);
    for (int k = 0; k < N_GROUPS; k++) {
        d->groups[k].dev = d;
        d->groups[k].id = k;
        d->groups[k].reads = g_array_new(FALSE, TRUE, sizeof(Read));
    }
    d->groups[GROUP_FAST].interval = wb_config_get_duration(config, "fast-interval");
    d->groups[GROUP_SLOW].interval = wb_config_get_duration(config, "slow-interval");

    d->map = wb_map_load(instance, wb_config_get_string(config, "map"), error);
    if (!d->map) {
        device_free(d);
        return FALSE;
    }
    g_autoptr(GHashTable) names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int k = 0; k < N_GROUPS; k++) {
        for (const char *const *item = wb_config_get_list(config, group_names[k]); *item; item++) {
            const WbMapRegister *reg = find_register(d, group_names[k], *item, error);
            if (!reg || !add_read(d, k, group_names[k], reg, names, error)) {
                device_free(d);
                return FALSE;
            }
        }
    }
    for (const char *const *key = wb_config_get_family(config, "setpoint."); *key; key++) {
        const char *name = *key + strlen("setpoint.");
        const char *point = wb_config_get_string(config, *key);
        const WbMapRegister *reg = find_register(d, *key, name, error);
        if (!reg) {
            device_free(d);
            return FALSE;
        }
        if (!wb_map_register_is_writable(reg)) {
            wb_config_set_error(config, error, *key, "%s is not writable in %s", name, wb_map_get_name(d->map));
            device_free(d);
            return FALSE;
        }
        g_autofree char *fb_key = g_strconcat("fallback.", name, NULL);
        if (!wb_config_has_key(config, fb_key)) {
            wb_config_set_error(config, error, *key,
                                "needs %s: the value %s gets when the setpoint is stale, invalid or out of range, "
                                "and when the daemon stops", fb_key, name);
            device_free(d);
            return FALSE;
        }
        Setpoint *s = g_new0(Setpoint, 1);
        s->dev = d;
        s->reg = reg;
        s->point = g_strdup(point);
        s->fallback = wb_config_get_double(config, fb_key);
        s->min_interval = wb_config_has_key(config, "min-write-interval")
                              ? wb_config_get_duration(config, "min-write-interval")
                              : (wb_map_register_is_flash(reg) ? 60 : 1) * G_USEC_PER_SEC;
        guint16 words[4];
        g_autoptr(GError) verr = NULL;
        double min, max;
        if (wb_map_register_get_size(reg) > 4 || !wb_map_register_encode(reg, s->fallback, words, &verr) ||
            (wb_map_register_get_range(reg, &min, &max) && (s->fallback < min || s->fallback > max))) {
            wb_config_set_error(config, error, fb_key, "%g is outside what %s takes%s%s", s->fallback, name,
                                verr ? ": " : "", verr ? verr->message : "");
            setpoint_free(s);
            device_free(d);
            return FALSE;
        }
        g_ptr_array_add(d->setpoints, s);
        /* its read-back, in the fast group */
        gboolean listed = FALSE;
        for (int k = 0; k < N_GROUPS; k++)
            for (guint i = 0; i < d->groups[k].reads->len; i++)
                listed |= k == GROUP_FAST && g_array_index(d->groups[k].reads, Read, i).reg == reg;
        if (!listed && !add_read(d, GROUP_FAST, *key, reg, names, error)) {
            device_free(d);
            return FALSE;
        }
    }
    for (const char *const *key = wb_config_get_family(config, "fallback."); *key; key++) {
        g_autofree char *sp = g_strconcat("setpoint.", *key + strlen("fallback."), NULL);
        if (!wb_config_has_key(config, sp)) {
            wb_config_set_error(config, error, *key, "there is no %s for it", sp);
            device_free(d);
            return FALSE;
        }
    }
    if (!d->groups[GROUP_FAST].reads->len && !d->groups[GROUP_SLOW].reads->len &&
        !d->groups[GROUP_CONNECT].reads->len) {
        wb_config_set_error(config, error, NULL, "nothing to read: list registers in fast, slow or connect");
        device_free(d);
        return FALSE;
    }

    d->modbus = wb_modbus_device_new(instance, NULL, d->map, error);
    if (!d->modbus) {
        device_free(d);
        return FALSE;
    }
    /* plan with the line's speed (TCP: per request) */
    guint baud = 0;
    if (wb_config_get_enum(config, "transport") != 1)
        baud = wb_config_has_key(config, "baud") ? (guint)wb_config_get_int(config, "baud")
                                                 : wb_map_get_baud(d->map) ? wb_map_get_baud(d->map) : 9600;
    for (int k = 0; k < N_GROUPS; k++) {
        if (!plan_group(d, &d->groups[k], baud, error)) {
            wb_modbus_device_free(d->modbus);
            device_free(d);
            return FALSE;
        }
    }
    *state = d;
    return TRUE;
}

static gboolean device_start(gpointer state, GError **error)
{
    Device *d = state;
    d->running = TRUE;
    for (int k = GROUP_FAST; k <= GROUP_SLOW; k++) {
        Group *g = &d->groups[k];
        if (!g->plan)
            continue;
        g->timer = wb_timer_new(d->inst, on_timer, g);
        wb_timer_start(g->timer, (guint)MAX(g->interval / 1000, 1), TRUE);
    }
    poll_group(&d->groups[GROUP_FAST]);
    if (!d->groups[GROUP_FAST].plan)
        poll_group(&d->groups[GROUP_SLOW]);
    if (!d->groups[GROUP_FAST].plan && !d->groups[GROUP_SLOW].plan)
        poll_group(&d->groups[GROUP_CONNECT]);
    for (guint i = 0; i < d->setpoints->len; i++) {
        Setpoint *s = g_ptr_array_index(d->setpoints, i);
        if (!d->sub)
            d->sub = wb_subscribe(d->inst, s->point, d->max_age, on_setpoint, on_setpoint_batch_end, d);
        else
            wb_subscription_add_pattern(d->sub, s->point);
    }
    return TRUE;
}

static void device_stop(gpointer state)
{
    Device *d = state;
    d->running = FALSE;
    wb_subscription_free(d->sub);
    d->sub = NULL;
    for (int k = 0; k < N_GROUPS; k++) {
        if (d->groups[k].timer)
            wb_timer_free(d->groups[k].timer);
        d->groups[k].timer = NULL;
    }
    /* the daemon stops: every setpoint register gets its fallback, once */
    if (d->setpoints->len && wb_modbus_device_is_connected(d->modbus)) {
        g_autoptr(GPtrArray) regs = g_ptr_array_new();
        for (guint i = 0; i < d->setpoints->len; i++) {
            Setpoint *s = g_ptr_array_index(d->setpoints, i);
            guint16 words[4] = {0};
            wb_map_register_encode(s->reg, s->fallback, words, NULL);
            /* (a write in flight may change it: then the fallback goes too) */
            if (!s->writing && s->have_readback &&
                memcmp(words, s->readback, wb_map_register_get_size(s->reg) * 2) == 0) {
                g_autofree char *fb = value_text(s->reg, s->fallback);
                wb_log(d->inst, WB_LOG_NOTICE, "stopping: %s already holds its fallback %s",
                       wb_map_register_get_name(s->reg), fb);
                continue;
            }
            WbModbusJob *job = wb_modbus_job_new(d->modbus);
            g_autoptr(WbWritePlan) plan = wb_write_plan_new(d->map, &s->reg, 1, NULL);
            for (guint q = 0; plan && q < wb_write_plan_get_n_requests(plan); q++) {
                guint fc, addr, count;
                wb_write_plan_get_request(plan, q, &fc, &addr, &count);
                wb_modbus_job_add_write(job, fc, addr, count, words + (addr - wb_map_register_get_address(s->reg)));
            }
            wb_modbus_job_set_run_at_stop(job);
            wb_modbus_job_submit(job, NULL, NULL, NULL);
            g_autofree char *fb = value_text(s->reg, s->fallback);
            wb_log(d->inst, WB_LOG_NOTICE, "stopping: writing the fallback %s = %s", wb_map_register_get_name(s->reg),
                   fb);
        }
    }
    wb_modbus_device_free(d->modbus); /* runs those writes first */
    d->modbus = NULL;
}

static void device_destroy(gpointer state)
{
    Device *d = state;
    if (d->modbus)
        wb_modbus_device_free(d->modbus);
    device_free(d);
}

static const WbPluginOps ops = {
    .struct_size = sizeof(WbPluginOps),
    .create = device_create,
    .start = device_start,
    .stop = device_stop,
    .destroy = device_destroy,
};

WB_PLUGIN_DEFINE("modbus-device", WB_VERSION,
                 "A Modbus device read through a register map; writes its setpoint registers (RTU, TCP, RTU over TCP)",
                 "GPL-3.0-or-later", WB_ROLE_SOURCE | WB_ROLE_ACTUATOR, options, &ops)
