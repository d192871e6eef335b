/* Register maps (data/devices/NAME.map, format 1: data/README.md) and the
 * register codec. */
#include "wb-map.h"

#include <errno.h>
#include <float.h>
#include <math.h>

#define MAP_FORMAT 1

static const char *const map_keys[] = {"format", "manufacturer", "model", "description", "word-order",
                                       "default-unit-id", "serial", "read-codes", "write-codes", "blocks",
                                       NULL};
static const char *const register_keys[] = {"name", "type", "word-order", "scale", "offset", "unit",
                                            "quantity", "channel", "access", "value", "min", "max",
                                            "default", "description", NULL};
static const char *const type_names[] = {"u16", "s16", "u32", "s32", "f32", NULL};
static const guint type_sizes[] = {1, 1, 2, 2, 2};
static const char *const symbolic_defaults[] = {"nominal-voltage", "nominal-line-voltage", "nominal-frequency",
                                                NULL};

static void register_free(gpointer data)
{
    WbMapRegister *r = data;
    g_free(r->name);
    g_free(r->unit);
    g_free(r->quantity);
    g_free(r->channel);
    g_free(r->key);
    g_free(r->default_value);
    g_free(r->description);
    g_free(r);
}

WbMap *wb_map_ref(WbMap *map)
{
    g_return_val_if_fail(map != NULL, NULL);
    g_atomic_int_inc(&map->ref);
    return map;
}

void wb_map_unref(WbMap *map)
{
    if (!map || !g_atomic_int_dec_and_test(&map->ref))
        return;
    g_free(map->name);
    g_free(map->path);
    g_free(map->model);
    g_ptr_array_unref(map->registers);
    g_array_unref(map->blocks);
    g_free(map);
}

/* ---- parsing helpers ---------------------------------------------------- */

typedef struct {
    const char *path;
    GKeyFile *kf;
    WbKfScan *scan;
    GString *errors;
} Ctx;

static void err(Ctx *c, int line, const char *format, ...) G_GNUC_PRINTF(3, 4);
static void err(Ctx *c, int line, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *msg = g_strdup_vprintf(format, args);
    va_end(args);
    if (c->errors->len)
        g_string_append_c(c->errors, '\n');
    g_string_append_printf(c->errors, "%s:%d: %s", c->path, line, msg);
}

static gboolean parse_uint(const char *text, guint64 max, guint *out)
{
    gint64 v;
    if (!wb_parse_int(text, &v) || v < 0 || (guint64)v > max)
        return FALSE;
    *out = (guint)v;
    return TRUE;
}

/* Returns the trimmed value of @key in @group, or NULL when absent. */
static char *get(Ctx *c, const char *group, const char *key)
{
    char *v = g_key_file_get_string(c->kf, group, key, NULL);
    return v ? g_strstrip(v) : NULL;
}

static int line_of(Ctx *c, const WbKfGroup *g, const char *key)
{
    int line = key ? wb_kf_group_key_line(g, key) : 0;
    return line ? line : g->line;
}

static void check_keys(Ctx *c, const WbKfGroup *g, const char *const *allowed)
{
    for (guint i = 0; i < g->keys->len; i++) {
        const char *key = g_ptr_array_index(g->keys, i);
        if (!g_strv_contains(allowed, key)) {
            g_autofree char *valid = g_strjoinv(", ", (char **)allowed);
            err(c, line_of(c, g, key), "[%s] unknown key '%s'; valid keys are: %s", g->name, key, valid);
        }
    }
}

static gboolean channel_ok(const char *ch)
{
    static const char *const named[] = {"l1", "l2", "l3", "l1-l2", "l2-l3", "l3-l1", NULL};
    if (g_strv_contains(named, ch))
        return TRUE;
    if (strncmp(ch, "dc", 2) != 0 || !ch[2])
        return FALSE;
    for (const char *p = ch + 2; *p; p++)
        if (!g_ascii_isdigit(*p))
            return FALSE;
    return TRUE;
}

static void parse_map_group(Ctx *c, WbMap *map, const WbKfGroup *g)
{
    check_keys(c, g, map_keys);
    g_autofree char *format = get(c, g->name, "format");
    guint fmt = 0;
    if (!format || !parse_uint(format, 1000, &fmt)) {
        err(c, line_of(c, g, "format"), "[map] format: expected the map format version, e.g. \"format = 1\"");
    } else if (fmt != MAP_FORMAT) {
        err(c, line_of(c, g, "format"), "[map] format: this is format %u; this wattbridge reads format %d", fmt,
            MAP_FORMAT);
    }
    g_autofree char *manufacturer = get(c, g->name, "manufacturer");
    g_autofree char *model = get(c, g->name, "model");
    map->model = g_strdup_printf("%s%s%s", manufacturer ? manufacturer : "", manufacturer && model ? " " : "",
                                 model ? model : "");
    if (!*map->model) {
        g_free(map->model);
        map->model = g_strdup(map->name);
    }

    g_autofree char *order = get(c, g->name, "word-order");
    if (order && strcmp(order, "high-first") != 0 && strcmp(order, "low-first") != 0)
        err(c, line_of(c, g, "word-order"), "[map] word-order: expected high-first or low-first, got \"%s\"", order);

    map->default_unit_id = 1;
    g_autofree char *unit = get(c, g->name, "default-unit-id");
    if (unit && (!parse_uint(unit, 247, &map->default_unit_id) || map->default_unit_id < 1))
        err(c, line_of(c, g, "default-unit-id"), "[map] default-unit-id: expected 1..247, got \"%s\"", unit);

    g_autofree char *reads = get(c, g->name, "read-codes");
    map->read_fc3 = TRUE;
    if (reads) {
        map->read_fc3 = FALSE;
        g_auto(GStrv) codes = g_strsplit(reads, ";", -1);
        for (int i = 0; codes[i]; i++) {
            g_strstrip(codes[i]);
            if (!*codes[i])
                continue;
            if (strcmp(codes[i], "3") == 0)
                map->read_fc3 = TRUE;
            else if (strcmp(codes[i], "4") == 0)
                map->read_fc4 = TRUE;
            else
                err(c, line_of(c, g, "read-codes"), "[map] read-codes: expected 3 and/or 4, got \"%s\"", codes[i]);
        }
    }
    g_autofree char *writes = get(c, g->name, "write-codes");
    if (writes) {
        g_auto(GStrv) codes = g_strsplit(writes, ";", -1);
        for (int i = 0; codes[i]; i++) {
            g_strstrip(codes[i]);
            if (!*codes[i])
                continue;
            if (strcmp(codes[i], "6") == 0)
                map->write_fc6 = TRUE;
            else if (strcmp(codes[i], "16") == 0)
                map->write_fc16 = TRUE;
            else
                err(c, line_of(c, g, "write-codes"), "[map] write-codes: expected 6 and/or 16, got \"%s\"", codes[i]);
        }
    }

    g_autofree char *blocks = get(c, g->name, "blocks");
    if (!blocks) {
        err(c, g->line, "[map] missing 'blocks' (the address ranges the device answers, e.g. 0x2000-0x2051)");
        return;
    }
    g_auto(GStrv) ranges = g_strsplit(blocks, ";", -1);
    for (int i = 0; ranges[i]; i++) {
        g_strstrip(ranges[i]);
        if (!*ranges[i])
            continue;
        g_auto(GStrv) ends = g_strsplit(ranges[i], "-", 2);
        WbMapBlock b;
        if (!ends[1] || !parse_uint(g_strstrip(ends[0]), 65535, &b.start) ||
            !parse_uint(g_strstrip(ends[1]), 65535, &b.end) || b.end < b.start) {
            err(c, line_of(c, g, "blocks"), "[map] blocks: expected FIRST-LAST address ranges, got \"%s\"", ranges[i]);
            continue;
        }
        g_array_append_val(map->blocks, b);
    }
    if (!map->blocks->len)
        err(c, line_of(c, g, "blocks"), "[map] blocks: no address range given (FIRST-LAST; ...)");
}

static int compare_blocks(gconstpointer a, gconstpointer b)
{
    return (int)((const WbMapBlock *)a)->start - (int)((const WbMapBlock *)b)->start;
}

static int compare_registers(gconstpointer a, gconstpointer b)
{
    const WbMapRegister *ra = *(WbMapRegister *const *)a, *rb = *(WbMapRegister *const *)b;
    return (int)ra->address - (int)rb->address;
}

static gboolean in_blocks(const WbMap *map, guint first, guint last)
{
    for (guint i = 0; i < map->blocks->len; i++) {
        const WbMapBlock *b = &g_array_index(map->blocks, WbMapBlock, i);
        if (first >= b->start && last <= b->end)
            return TRUE;
    }
    return FALSE;
}

static void parse_register(Ctx *c, WbMap *map, const WbKfGroup *g, gboolean map_low_first)
{
    check_keys(c, g, register_keys);
    const char *addr_text = g->name + strlen("holding ");
    WbMapRegister *r = g_new0(WbMapRegister, 1);
    r->line = g->line;
    r->scale = 1;
    r->low_word_first = map_low_first;
    if (!parse_uint(addr_text, 65535, &r->address)) {
        err(c, g->line, "[%s] expected \"holding <address>\" with a decimal or 0x address up to 65535", g->name);
        register_free(r);
        return;
    }
    r->name = get(c, g->name, "name");
    if (!r->name || !*r->name)
        err(c, g->line, "[%s] missing 'name' (the maker's register name)", g->name);

    g_autofree char *type = get(c, g->name, "type");
    gboolean type_ok = FALSE;
    for (int i = 0; type && type_names[i]; i++)
        if (strcmp(type, type_names[i]) == 0) {
            r->type = (WbRegType)i;
            r->size = type_sizes[i];
            type_ok = TRUE;
        }
    if (!type_ok) {
        g_autofree char *valid = g_strjoinv(", ", (char **)type_names);
        err(c, line_of(c, g, "type"), "[%s] type: expected one of %s, got \"%s\"", g->name, valid,
            type ? type : "(missing)");
        r->size = 1;
    }
    if (r->address + r->size - 1 > 65535)
        err(c, g->line, "[%s] the register runs past address 65535", g->name);

    g_autofree char *order = get(c, g->name, "word-order");
    if (order) {
        if (strcmp(order, "high-first") == 0)
            r->low_word_first = FALSE;
        else if (strcmp(order, "low-first") == 0)
            r->low_word_first = TRUE;
        else
            err(c, line_of(c, g, "word-order"), "[%s] word-order: expected high-first or low-first, got \"%s\"",
                g->name, order);
    }

    g_autofree char *scale = get(c, g->name, "scale");
    if (scale && (!wb_parse_double(scale, &r->scale) || r->scale == 0))
        err(c, line_of(c, g, "scale"), "[%s] scale: expected a non-zero number, got \"%s\"", g->name, scale);
    g_autofree char *offset = get(c, g->name, "offset");
    if (offset && !wb_parse_double(offset, &r->offset))
        err(c, line_of(c, g, "offset"), "[%s] offset: expected a number, got \"%s\"", g->name, offset);

    r->quantity = get(c, g->name, "quantity");
    r->unit = get(c, g->name, "unit");
    if (r->quantity) {
        const char *qunit = wb_quantity_get_unit(r->quantity);
        if (!qunit)
            err(c, line_of(c, g, "quantity"), "[%s] quantity: \"%s\" is not in quantities.h", g->name, r->quantity);
        else if (r->unit && strcmp(r->unit, qunit) != 0)
            err(c, line_of(c, g, "unit"),
                "[%s] unit: a %s register's unit is \"%s\", got \"%s\" (use scale to convert)", g->name,
                r->quantity, qunit, r->unit);
        else if (!r->unit)
            r->unit = g_strdup(qunit);
    }
    if (!r->unit)
        r->unit = g_strdup("");
    r->channel = get(c, g->name, "channel");
    if (r->channel && !channel_ok(r->channel))
        err(c, line_of(c, g, "channel"), "[%s] channel: expected l1, l2, l3, l1-l2, l2-l3, l3-l1 or dcN, got \"%s\"",
            g->name, r->channel);
    if (r->channel && !r->quantity)
        err(c, line_of(c, g, "channel"), "[%s] a channel needs a quantity", g->name);
    if (r->quantity)
        r->key = r->channel ? g_strdup_printf("%s-%s", r->quantity, r->channel) : g_strdup(r->quantity);

    g_autofree char *access = get(c, g->name, "access");
    if (access) {
        if (strcmp(access, "rw") == 0 || strcmp(access, "w") == 0)
            r->writable = TRUE;
        else if (strcmp(access, "r") != 0)
            err(c, line_of(c, g, "access"), "[%s] access: expected r, rw or w, got \"%s\"", g->name, access);
    }

    g_autofree char *min = get(c, g->name, "min");
    g_autofree char *max = get(c, g->name, "max");
    if (min || max) {
        r->has_range = TRUE;
        if (!min || !max || !wb_parse_double(min, &r->min) || !wb_parse_double(max, &r->max) || r->min > r->max)
            err(c, line_of(c, g, min ? "min" : "max"), "[%s] min and max: expected two numbers, min <= max", g->name);
        if (!r->writable)
            err(c, line_of(c, g, min ? "min" : "max"), "[%s] min/max apply to writable registers (access = rw)",
                g->name);
    }

    g_autofree char *value = get(c, g->name, "value");
    if (value) {
        r->has_value = TRUE;
        guint16 words[4];
        g_autoptr(GError) e = NULL;
        if (strcmp(value, "unit-id") == 0) {
            r->value_is_unit_id = TRUE;
        } else if (!wb_parse_double(value, &r->value)) {
            err(c, line_of(c, g, "value"), "[%s] value: expected a number or unit-id, got \"%s\"", g->name, value);
        } else if (type_ok && !wb_map_register_encode(r, r->value, words, &e)) {
            err(c, line_of(c, g, "value"), "[%s] value: %s", g->name, e->message);
        }
        if (r->quantity)
            err(c, line_of(c, g, "value"), "[%s] a register with a quantity is filled from points; drop 'value'",
                g->name);
    }
    r->default_value = get(c, g->name, "default");
    if (r->default_value) {
        double d;
        if (!r->quantity)
            err(c, line_of(c, g, "default"), "[%s] default applies to registers with a quantity", g->name);
        else if (!g_strv_contains(symbolic_defaults, r->default_value) && !wb_parse_double(r->default_value, &d))
            err(c, line_of(c, g, "default"),
                "[%s] default: expected a number, nominal-voltage, nominal-line-voltage or nominal-frequency, got \"%s\"",
                g->name, r->default_value);
    }
    r->description = get(c, g->name, "description");

    if (map->blocks->len && !in_blocks(map, r->address, r->address + r->size - 1))
        err(c, g->line, "[%s] %s lies outside every block in [map] blocks", g->name, r->name ? r->name : "");
    g_ptr_array_add(map->registers, r);
}

static WbMap *map_parse(const char *path, const char *text, GError **error)
{
    g_autoptr(WbMap) map = g_new0(WbMap, 1);
    map->ref = 1;
    map->path = g_strdup(path);
    g_autofree char *base = g_path_get_basename(path);
    if (g_str_has_suffix(base, ".map"))
        base[strlen(base) - 4] = '\0';
    map->name = g_strdup(base);
    map->registers = g_ptr_array_new_with_free_func(register_free);
    map->blocks = g_array_new(FALSE, FALSE, sizeof(WbMapBlock));

    g_autoptr(GString) errors = g_string_new(NULL);
    g_autoptr(WbKfScan) scan = wb_kf_scan(path, text);
    for (guint i = 0; i < scan->errors->len; i++)
        g_string_append_printf(errors, "%s%s", errors->len ? "\n" : "", (char *)g_ptr_array_index(scan->errors, i));

    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) kerr = NULL;
    if (!errors->len && !g_key_file_load_from_data(kf, text, -1, G_KEY_FILE_NONE, &kerr))
        g_string_append_printf(errors, "%s: %s", path, kerr->message);
    if (errors->len) {
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, errors->str);
        return NULL;
    }

    Ctx c = {path, kf, scan, errors};
    WbKfGroup *mg = wb_kf_scan_find(scan, "map");
    if (!mg) {
        err(&c, 1, "missing the [map] section (format, model, blocks)");
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, errors->str);
        return NULL;
    }
    parse_map_group(&c, map, mg);
    g_array_sort(map->blocks, compare_blocks);
    g_autofree char *order = get(&c, "map", "word-order");
    gboolean low_first = order && strcmp(order, "low-first") == 0;

    for (guint i = 0; i < scan->groups->len; i++) {
        WbKfGroup *g = g_ptr_array_index(scan->groups, i);
        if (g == mg)
            continue;
        if (!g_str_has_prefix(g->name, "holding ")) {
            err(&c, g->line, "[%s] expected [map] or [holding <address>] (format 1 has holding registers only)",
                g->name);
            continue;
        }
        parse_register(&c, map, g, low_first);
    }
    g_ptr_array_sort(map->registers, compare_registers);
    for (guint i = 1; i < map->registers->len; i++) {
        WbMapRegister *a = g_ptr_array_index(map->registers, i - 1);
        WbMapRegister *b = g_ptr_array_index(map->registers, i);
        if (a->address + a->size > b->address)
            err(&c, b->line, "register %s at 0x%04X overlaps %s at 0x%04X (line %d)", b->name, b->address, a->name,
                a->address, a->line);
    }
    gboolean any_writable = FALSE;
    for (guint i = 0; i < map->registers->len; i++)
        any_writable |= ((WbMapRegister *)g_ptr_array_index(map->registers, i))->writable;
    if (any_writable && !map->write_fc6 && !map->write_fc16)
        map->write_fc16 = TRUE;

    if (errors->len) {
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, errors->str);
        return NULL;
    }
    return g_steal_pointer(&map);
}

WbMap *wb_map_load_file(const char *path, GError **error)
{
    g_return_val_if_fail(path != NULL, NULL);
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, error))
        return NULL;
    if (!g_utf8_validate(text, -1, NULL)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s: not valid UTF-8", path);
        return NULL;
    }
    return map_parse(path, text, error);
}

WbMap *wb_map_load(WbInstance *instance, const char *name, GError **error)
{
    g_return_val_if_fail(instance != NULL && name != NULL, NULL);
    g_autofree char *rel = NULL;
    if (strchr(name, '/'))
        rel = g_strdup(name);
    else
        rel = g_strdup_printf("devices/%s.map", name);
    g_autofree char *path = wb_instance_find_data_file(instance, rel, error);
    if (!path)
        return NULL;
    return wb_map_load_file(path, error);
}

/* ---- accessors ---------------------------------------------------------- */

const char *wb_map_get_name(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, NULL);
    return map->name;
}

const char *wb_map_get_model(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, NULL);
    return map->model;
}

guint wb_map_get_default_unit_id(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 1);
    return map->default_unit_id;
}

guint wb_map_get_n_registers(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 0);
    return map->registers->len;
}

const WbMapRegister *wb_map_get_register(const WbMap *map, guint index)
{
    g_return_val_if_fail(map != NULL && index < map->registers->len, NULL);
    return g_ptr_array_index(map->registers, index);
}

const WbMapRegister *wb_map_find_register(const WbMap *map, const char *name)
{
    g_return_val_if_fail(map != NULL && name != NULL, NULL);
    for (guint i = 0; i < map->registers->len; i++) {
        const WbMapRegister *r = g_ptr_array_index(map->registers, i);
        if (g_strcmp0(r->name, name) == 0)
            return r;
    }
    return NULL;
}

const char *wb_map_register_get_name(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    return reg->name;
}

guint wb_map_register_get_address(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, 0);
    return reg->address;
}

guint wb_map_register_get_size(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, 0);
    return reg->size;
}

const char *wb_map_register_get_quantity(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    return reg->quantity;
}

const char *wb_map_register_get_channel(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    return reg->channel;
}

const char *wb_map_register_get_key(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    return reg->key;
}

const char *wb_map_register_get_unit(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, "");
    return reg->unit;
}

const char *wb_map_register_get_default(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, NULL);
    return reg->default_value;
}

gboolean wb_map_register_is_writable(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    return reg->writable;
}

/* ---- codec -------------------------------------------------------------- */

static void put32(const WbMapRegister *reg, guint32 v, guint16 *words)
{
    guint16 hi = (guint16)(v >> 16), lo = (guint16)(v & 0xFFFF);
    words[0] = reg->low_word_first ? lo : hi;
    words[1] = reg->low_word_first ? hi : lo;
}

static guint32 get32(const WbMapRegister *reg, const guint16 *words)
{
    guint32 hi = reg->low_word_first ? words[1] : words[0];
    guint32 lo = reg->low_word_first ? words[0] : words[1];
    return (hi << 16) | lo;
}

gboolean wb_map_register_encode(const WbMapRegister *reg, double value, guint16 *words, GError **error)
{
    g_return_val_if_fail(reg != NULL && words != NULL, FALSE);
    double raw = (value - reg->offset) / reg->scale;
    double lo = 0, hi = 0;

    if (!isfinite(raw)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s: %g is not a finite value",
                    reg->name, value);
        return FALSE;
    }
    switch (reg->type) {
    case WB_REG_F32: {
        if (fabs(raw) > FLT_MAX) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                        "%s: %g %s does not fit a 32-bit float", reg->name, value, reg->unit);
            return FALSE;
        }
        union {
            float f;
            guint32 u;
        } conv = {.f = (float)raw};
        put32(reg, conv.u, words);
        return TRUE;
    }
    case WB_REG_U16: lo = 0; hi = G_MAXUINT16; break;
    case WB_REG_S16: lo = G_MININT16; hi = G_MAXINT16; break;
    case WB_REG_U32: lo = 0; hi = G_MAXUINT32; break;
    case WB_REG_S32: lo = G_MININT32; hi = G_MAXINT32; break;
    }
    double r = nearbyint(raw);
    if (r < lo || r > hi) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                    "%s: %g %s (raw %.0f) does not fit %s (%.0f..%.0f)", reg->name, value, reg->unit, r,
                    type_names[reg->type], lo, hi);
        return FALSE;
    }
    switch (reg->type) {
    case WB_REG_U16: words[0] = (guint16)r; break;
    case WB_REG_S16: words[0] = (guint16)(gint16)r; break;
    case WB_REG_U32: put32(reg, (guint32)r, words); break;
    case WB_REG_S32: put32(reg, (guint32)(gint32)r, words); break;
    default: break;
    }
    return TRUE;
}

double wb_map_register_decode(const WbMapRegister *reg, const guint16 *words)
{
    g_return_val_if_fail(reg != NULL && words != NULL, NAN);
    double raw = 0;
    switch (reg->type) {
    case WB_REG_U16: raw = words[0]; break;
    case WB_REG_S16: raw = (gint16)words[0]; break;
    case WB_REG_U32: raw = get32(reg, words); break;
    case WB_REG_S32: raw = (gint32)get32(reg, words); break;
    case WB_REG_F32: {
        union {
            guint32 u;
            float f;
        } conv = {.u = get32(reg, words)};
        raw = conv.f;
        break;
    }
    }
    return raw * reg->scale + reg->offset;
}
