/* Register maps (data/devices/NAME.map, format 1: data/README.md) and the
 * register codec. */
#include "wb-map.h"

#include <errno.h>
#include <float.h>
#include <math.h>

#define MAP_FORMAT 1

static const char *const map_keys[] = {
    "format", "manufacturer", "model", "description", "word-order", "byte-order", "default-unit-id", "serial",
    "read-codes", "write-codes", "blocks", "no-read", "input-blocks", "input-no-read", "coil-blocks",
    "coil-no-read", "discrete-blocks", "discrete-no-read", "max-read", "max-read-bits", "max-write",
    "turnaround", "min-delay", "address-offset", "direction", NULL};
static const char *const register_keys[] = {
    "name", "type", "length", "word-order", "byte-order", "scale", "offset", "unit", "quantity", "channel",
    "access", "flash", "read-codes", "write-codes", "direction", "values", "bits", "value", "min", "max",
    "default", "description", NULL};
static const char *const type_names[] = {"u16", "s16", "u32", "s32", "u64", "s64", "f32", "f64",
                                         "string", "bitfield", "enum", "bit", NULL};
static const guint type_sizes[] = {1, 1, 2, 2, 4, 4, 2, 4, 0, 1, 1, 1};
static const char *const table_names[] = {"coil", "discrete", "input", "holding", NULL};
static const char *const direction_names[] = {"import", "export", "production", "consumption", "charge",
                                              "discharge", NULL};
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
    if (r->names) {
        for (guint i = 0; i < r->names->len; i++)
            g_free(g_array_index(r->names, WbNamedValue, i).name);
        g_array_unref(r->names);
    }
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
    for (int t = 0; t < 4; t++) {
        g_array_unref(map->tables[t].blocks);
        g_array_unref(map->tables[t].no_read);
    }
    g_free(map);
}

/* ---- parsing helpers ---------------------------------------------------- */

typedef struct {
    const char *path;
    GKeyFile *kf;
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

static int line_of(const WbKfGroup *g, const char *key)
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
            err(c, line_of(g, key), "[%s] unknown key '%s'; valid keys are: %s", g->name, key, valid);
        }
    }
}

static int index_of(const char *const *names, const char *value)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], value) == 0)
            return i;
    return -1;
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

/* "3;4" -> FC_BIT(3) | FC_BIT(4); each code must be in @allowed. */
static gboolean parse_codes(const char *text, guint allowed, guint *out)
{
    g_auto(GStrv) codes = g_strsplit(text, ";", -1);
    *out = 0;
    for (int i = 0; codes[i]; i++) {
        g_strstrip(codes[i]);
        if (!*codes[i])
            continue;
        guint fc;
        if (!parse_uint(codes[i], 31, &fc) || !(allowed & FC_BIT(fc)))
            return FALSE;
        *out |= FC_BIT(fc);
    }
    return *out != 0;
}

static char *codes_text(guint mask)
{
    GString *s = g_string_new(NULL);
    for (guint fc = 0; fc < 32; fc++)
        if (mask & FC_BIT(fc))
            g_string_append_printf(s, "%s%u", s->len ? " and " : "", fc);
    return g_string_free(s, FALSE);
}

/* ranges "A-B; C-D" (decimal or 0x); single addresses too */
static gboolean parse_ranges(const char *text, GArray *out, GString *bad)
{
    g_auto(GStrv) ranges = g_strsplit(text, ";", -1);
    for (int i = 0; ranges[i]; i++) {
        g_strstrip(ranges[i]);
        if (!*ranges[i])
            continue;
        g_auto(GStrv) ends = g_strsplit(ranges[i], "-", 2);
        WbMapBlock b;
        if (!parse_uint(g_strstrip(ends[0]), 65535, &b.start) ||
            (ends[1] ? !parse_uint(g_strstrip(ends[1]), 65535, &b.end) : (b.end = b.start, FALSE)) ||
            b.end < b.start) {
            g_string_assign(bad, ranges[i]);
            return FALSE;
        }
        g_array_append_val(out, b);
    }
    return TRUE;
}

static gboolean in_ranges(const GArray *ranges, guint first, guint last)
{
    for (guint i = 0; i < ranges->len; i++) {
        const WbMapBlock *b = &g_array_index(ranges, WbMapBlock, i);
        if (first >= b->start && last <= b->end)
            return TRUE;
    }
    return FALSE;
}

static gboolean touches_ranges(const GArray *ranges, guint first, guint last)
{
    for (guint i = 0; i < ranges->len; i++) {
        const WbMapBlock *b = &g_array_index(ranges, WbMapBlock, i);
        if (first <= b->end && last >= b->start)
            return TRUE;
    }
    return FALSE;
}

/* ---- [map] ---------------------------------------------------------------- */

static void parse_duration_key(Ctx *c, const WbKfGroup *g, const char *key, gint64 *out)
{
    g_autofree char *v = get(c, g->name, key);
    if (v && !wb_parse_duration(v, out))
        err(c, line_of(g, key), "[map] %s: expected a duration such as 850ms or 0.1s, got \"%s\"", key, v);
}

static void parse_map_group(Ctx *c, WbMap *map, const WbKfGroup *g)
{
    check_keys(c, g, map_keys);
    g_autofree char *format = get(c, g->name, "format");
    guint fmt = 0;
    if (!format || !parse_uint(format, 1000, &fmt))
        err(c, line_of(g, "format"), "[map] format: expected the map format version, e.g. \"format = 1\"");
    else if (fmt != MAP_FORMAT)
        err(c, line_of(g, "format"), "[map] format: this is format %u; this wattbridge reads format %d", fmt,
            MAP_FORMAT);

    g_autofree char *manufacturer = get(c, g->name, "manufacturer");
    g_autofree char *model = get(c, g->name, "model");
    map->model = g_strdup_printf("%s%s%s", manufacturer ? manufacturer : "", manufacturer && model ? " " : "",
                                 model ? model : "");
    if (!*map->model) {
        g_free(map->model);
        map->model = g_strdup(map->name);
    }

    map->default_unit_id = 1;
    g_autofree char *unit = get(c, g->name, "default-unit-id");
    if (unit && (!parse_uint(unit, 247, &map->default_unit_id) || map->default_unit_id < 1))
        err(c, line_of(g, "default-unit-id"), "[map] default-unit-id: expected 1..247, got \"%s\"", unit);

    g_autofree char *serial = get(c, g->name, "serial");
    if (serial) {
        /* "9600 8N1" */
        g_auto(GStrv) parts = g_strsplit(serial, " ", 2);
        const char *f = parts[1] ? g_strstrip(parts[1]) : "";
        if (!parse_uint(parts[0], 4000000, &map->baud) || strlen(f) != 3 || (f[0] != '7' && f[0] != '8') ||
            !strchr("NEO", g_ascii_toupper(f[1])) || (f[2] != '1' && f[2] != '2'))
            err(c, line_of(g, "serial"), "[map] serial: expected a line setting such as \"9600 8N1\", got \"%s\"",
                serial);
        else {
            map->data_bits = (guint)(f[0] - '0');
            map->parity = g_ascii_toupper(f[1]);
            map->stop_bits = (guint)(f[2] - '0');
        }
    }

    g_autofree char *reads = get(c, g->name, "read-codes");
    map->read_fc3 = TRUE;
    if (reads) {
        guint mask;
        if (!parse_codes(reads, FC_BIT(3) | FC_BIT(4), &mask))
            err(c, line_of(g, "read-codes"), "[map] read-codes: expected 3 and/or 4, got \"%s\"", reads);
        else {
            map->read_fc3 = (mask & FC_BIT(3)) != 0;
            map->read_fc4 = (mask & FC_BIT(4)) != 0;
        }
    }
    g_autofree char *writes = get(c, g->name, "write-codes");
    map->write_fc16 = TRUE; /* the default, data/README.md */
    if (writes) {
        guint mask;
        if (!parse_codes(writes, FC_BIT(6) | FC_BIT(16), &mask))
            err(c, line_of(g, "write-codes"), "[map] write-codes: expected 6 and/or 16, got \"%s\"", writes);
        else {
            map->write_fc6 = (mask & FC_BIT(6)) != 0;
            map->write_fc16 = (mask & FC_BIT(16)) != 0;
        }
    }

    static const char *const block_keys[4][2] = {
        {"coil-blocks", "coil-no-read"},
        {"discrete-blocks", "discrete-no-read"},
        {"input-blocks", "input-no-read"},
        {"blocks", "no-read"},
    };
    for (int t = 0; t < 4; t++) {
        for (int k = 0; k < 2; k++) {
            g_autofree char *v = get(c, g->name, block_keys[t][k]);
            if (!v)
                continue;
            GArray *into = k == 0 ? map->tables[t].blocks : map->tables[t].no_read;
            g_autoptr(GString) bad = g_string_new(NULL);
            if (!parse_ranges(v, into, bad))
                err(c, line_of(g, block_keys[t][k]), "[map] %s: expected FIRST-LAST address ranges, got \"%s\"",
                    block_keys[t][k], bad->str);
            else if (k == 0 && !into->len)
                err(c, line_of(g, block_keys[t][k]), "[map] %s: no address range given (FIRST-LAST; ...)",
                    block_keys[t][k]);
            if (k == 0)
                map->tables[t].has_blocks = TRUE;
        }
    }

    map->max_read = 125;
    map->max_read_bits = 2000;
    map->max_write = 123;
    struct {
        const char *key;
        guint *out;
        guint max;
    } limits[] = {{"max-read", &map->max_read, 125}, {"max-read-bits", &map->max_read_bits, 2000},
                  {"max-write", &map->max_write, 123}};
    for (gsize i = 0; i < G_N_ELEMENTS(limits); i++) {
        g_autofree char *v = get(c, g->name, limits[i].key);
        if (v && (!parse_uint(v, limits[i].max, limits[i].out) || *limits[i].out < 1))
            err(c, line_of(g, limits[i].key), "[map] %s: expected 1..%u (the Modbus limit), got \"%s\"",
                limits[i].key, limits[i].max, v);
    }
    parse_duration_key(c, g, "turnaround", &map->turnaround_us);
    parse_duration_key(c, g, "min-delay", &map->min_delay_us);

    g_autofree char *offset = get(c, g->name, "address-offset");
    gint64 off = 0;
    if (offset && (!wb_parse_int(offset, &off) || off < -65535 || off > 65535))
        err(c, line_of(g, "address-offset"),
            "[map] address-offset: expected the integer added to documented numbers to get wire addresses "
            "(e.g. -1), got \"%s\"", offset);
    map->address_offset = (int)off;
    /* ranges are written in the datasheet's numbers, like section names */
    for (int t = 0; t < 4 && off; t++) {
        GArray *lists[2] = {map->tables[t].blocks, map->tables[t].no_read};
        for (int k = 0; k < 2; k++) {
            for (guint i = 0; i < lists[k]->len; i++) {
                WbMapBlock *b = &g_array_index(lists[k], WbMapBlock, i);
                gint64 s = (gint64)b->start + off, e = (gint64)b->end + off;
                if (s < 0 || e > 65535) {
                    err(c, line_of(g, "address-offset"),
                        "[map] address-offset %" G_GINT64_FORMAT " moves the range %u-%u outside 0..65535", off,
                        b->start, b->end);
                    s = CLAMP(s, 0, 65535);
                    e = CLAMP(e, s, 65535);
                }
                b->start = (guint)s;
                b->end = (guint)e;
            }
        }
    }

    map->direction = -1;
    g_autofree char *dir = get(c, g->name, "direction");
    if (dir && (map->direction = index_of(direction_names, dir)) < 0) {
        g_autofree char *valid = g_strjoinv(", ", (char **)direction_names);
        err(c, line_of(g, "direction"), "[map] direction: expected one of %s, got \"%s\"", valid, dir);
    }
}

/* ---- registers ---------------------------------------------------------- */

static gboolean parse_names(const char *text, GArray *out, guint64 max_value, GString *bad)
{
    g_auto(GStrv) items = g_strsplit(text, ";", -1);
    for (int i = 0; items[i]; i++) {
        g_strstrip(items[i]);
        if (!*items[i])
            continue;
        char *colon = strchr(items[i], ':');
        gint64 v;
        if (!colon) {
            g_string_assign(bad, items[i]);
            return FALSE;
        }
        *colon = '\0';
        g_strstrip(items[i]);
        char *name = g_strstrip(colon + 1);
        if (!wb_parse_int(items[i], &v) || v < 0 || (guint64)v > max_value || !*name) {
            g_string_printf(bad, "%s:%s", items[i], name);
            return FALSE;
        }
        WbNamedValue nv = {(guint64)v, g_strdup(name)};
        g_array_append_val(out, nv);
    }
    return out->len > 0;
}

static void parse_register(Ctx *c, WbMap *map, const WbKfGroup *g, guint table, const char *addr_text,
                           gboolean map_low_words, gboolean map_little_bytes)
{
    check_keys(c, g, register_keys);
    WbMapRegister *r = g_new0(WbMapRegister, 1);
    r->line = g->line;
    r->table = table;
    r->scale = 1;
    r->low_word_first = map_low_words;
    r->little_bytes = map_little_bytes;
    r->direction = -1;
    r->readable = TRUE;
    guint doc;
    gboolean doc_ok = parse_uint(addr_text, 65535, &doc);
    gint64 wire = doc_ok ? (gint64)doc + map->address_offset : 0;
    if (!doc_ok || wire < 0 || wire > 65535) {
        err(c, g->line, "[%s] expected \"%s <address>\" with a decimal or 0x address%s", g->name,
            table_names[table], doc_ok ? " that stays within 0..65535 after address-offset" : "");
        register_free(r);
        return;
    }
    r->doc_address = doc;
    r->address = (guint)wire;
    r->name = get(c, g->name, "name");
    if (!r->name || !*r->name)
        err(c, g->line, "[%s] missing 'name' (the maker's register name)", g->name);

    gboolean bits_table = table == WB_MAP_COIL || table == WB_MAP_DISCRETE;
    g_autofree char *type = get(c, g->name, "type");
    int ti = type ? index_of(type_names, type) : (bits_table ? WB_REG_BIT : -1);
    gboolean type_ok = ti >= 0;
    if (type_ok && bits_table != (ti == WB_REG_BIT)) {
        err(c, line_of(g, "type"), "[%s] type: %s registers are %s", g->name, table_names[table],
            bits_table ? "bits (type = bit)" : "words (not type = bit)");
        type_ok = FALSE;
    } else if (!type_ok) {
        g_autofree char *valid = g_strjoinv(", ", (char **)type_names);
        err(c, line_of(g, "type"), "[%s] type: expected one of %s, got \"%s\"", g->name, valid,
            type ? type : "(missing)");
    }
    r->type = type_ok ? (WbRegType)ti : WB_REG_U16;
    r->size = type_sizes[r->type];

    g_autofree char *length = get(c, g->name, "length");
    if (length) {
        guint n = 0;
        gboolean variable = r->type == WB_REG_STRING || r->type == WB_REG_BITFIELD || r->type == WB_REG_ENUM;
        guint max = r->type == WB_REG_STRING ? 125 : 2;
        if (!variable)
            err(c, line_of(g, "length"), "[%s] length applies to string, bitfield and enum registers", g->name);
        else if (!parse_uint(length, max, &n) || n < 1)
            err(c, line_of(g, "length"), "[%s] length: expected 1..%u registers, got \"%s\"", g->name, max, length);
        else
            r->size = n;
    } else if (r->type == WB_REG_STRING) {
        err(c, g->line, "[%s] a string register needs its length in registers (length = N)", g->name);
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
            err(c, line_of(g, "word-order"), "[%s] word-order: expected high-first or low-first, got \"%s\"",
                g->name, order);
    }
    g_autofree char *border = get(c, g->name, "byte-order");
    if (border) {
        if (strcmp(border, "big") == 0)
            r->little_bytes = FALSE;
        else if (strcmp(border, "little") == 0)
            r->little_bytes = TRUE;
        else
            err(c, line_of(g, "byte-order"), "[%s] byte-order: expected big or little, got \"%s\"", g->name, border);
    }

    g_autofree char *scale = get(c, g->name, "scale");
    if (scale && (!wb_parse_double(scale, &r->scale) || r->scale == 0))
        err(c, line_of(g, "scale"), "[%s] scale: expected a non-zero number, got \"%s\"", g->name, scale);
    g_autofree char *offset = get(c, g->name, "offset");
    if (offset && !wb_parse_double(offset, &r->offset))
        err(c, line_of(g, "offset"), "[%s] offset: expected a number, got \"%s\"", g->name, offset);

    r->quantity = get(c, g->name, "quantity");
    r->unit = get(c, g->name, "unit");
    if (r->quantity) {
        const char *qunit = wb_quantity_get_unit(r->quantity);
        if (!qunit)
            err(c, line_of(g, "quantity"), "[%s] quantity: \"%s\" is not in quantities.h", g->name, r->quantity);
        else if (r->unit && strcmp(r->unit, qunit) != 0)
            err(c, line_of(g, "unit"),
                "[%s] unit: a %s register's unit is \"%s\", got \"%s\" (use scale to convert)", g->name,
                r->quantity, qunit, r->unit);
        else if (!r->unit)
            r->unit = g_strdup(qunit);
    }
    if (!r->unit)
        r->unit = g_strdup("");
    r->channel = get(c, g->name, "channel");
    if (r->channel && !channel_ok(r->channel))
        err(c, line_of(g, "channel"), "[%s] channel: expected l1, l2, l3, l1-l2, l2-l3, l3-l1 or dcN, got \"%s\"",
            g->name, r->channel);
    if (r->channel && !r->quantity)
        err(c, line_of(g, "channel"), "[%s] a channel needs a quantity", g->name);
    if (r->quantity)
        r->key = r->channel ? g_strdup_printf("%s-%s", r->quantity, r->channel) : g_strdup(r->quantity);

    g_autofree char *access = get(c, g->name, "access");
    if (access) {
        if (strcmp(access, "rw") == 0)
            r->writable = TRUE;
        else if (strcmp(access, "w") == 0)
            r->writable = TRUE, r->readable = FALSE;
        else if (strcmp(access, "r") != 0)
            err(c, line_of(g, "access"), "[%s] access: expected r, rw or w, got \"%s\"", g->name, access);
    }
    if (r->writable && (table == WB_MAP_INPUT || table == WB_MAP_DISCRETE))
        err(c, line_of(g, "access"), "[%s] %s registers cannot be written", g->name, table_names[table]);

    g_autofree char *flash = get(c, g->name, "flash");
    if (flash) {
        if (strcmp(flash, "true") == 0)
            r->flash = TRUE;
        else if (strcmp(flash, "false") != 0)
            err(c, line_of(g, "flash"), "[%s] flash: expected true or false, got \"%s\"", g->name, flash);
        if (r->flash && !r->writable)
            err(c, line_of(g, "flash"), "[%s] flash marks a writable setting (access = rw or w)", g->name);
    }

    /* function codes: the table's, narrowed per register */
    static const guint table_reads[4] = {FC_BIT(1), FC_BIT(2), FC_BIT(4), FC_BIT(3)};
    static const guint table_writes[4] = {FC_BIT(5) | FC_BIT(15), 0, 0, FC_BIT(6) | FC_BIT(16)};
    guint allowed_reads = table_reads[table];
    if (table == WB_MAP_HOLDING)
        allowed_reads = (map->read_fc3 ? FC_BIT(3) : 0) | (map->read_fc4 ? FC_BIT(4) : 0);
    r->read_fcs = r->readable ? allowed_reads : 0;
    r->write_fcs = 0;
    if (r->writable) {
        r->write_fcs = table_writes[table];
        if (table == WB_MAP_HOLDING)
            r->write_fcs = (map->write_fc6 ? FC_BIT(6) : 0) | (map->write_fc16 ? FC_BIT(16) : 0);
    }
    g_autofree char *rc = get(c, g->name, "read-codes");
    if (rc) {
        guint mask;
        g_autofree char *valid = codes_text(allowed_reads);
        if (!r->readable)
            err(c, line_of(g, "read-codes"), "[%s] read-codes: a write-only register (access = w) is never read",
                g->name);
        else if (!parse_codes(rc, table_reads[table] | (table == WB_MAP_HOLDING ? FC_BIT(4) : 0), &mask))
            err(c, line_of(g, "read-codes"), "[%s] read-codes: %s registers are read with %s, got \"%s\"", g->name,
                table_names[table], valid, rc);
        else
            r->read_fcs = mask;
    }
    g_autofree char *wc = get(c, g->name, "write-codes");
    if (wc) {
        guint mask;
        g_autofree char *valid = codes_text(table_writes[table]);
        if (!r->writable)
            err(c, line_of(g, "write-codes"), "[%s] write-codes need access = rw or w", g->name);
        else if (!parse_codes(wc, table_writes[table], &mask))
            err(c, line_of(g, "write-codes"), "[%s] write-codes: %s registers are written with %s, got \"%s\"",
                g->name, table_names[table], valid, wc);
        else
            r->write_fcs = mask;
    }
    if (r->writable && r->size > 1 && !(r->write_fcs & (FC_BIT(16) | FC_BIT(15))))
        err(c, line_of(g, wc ? "write-codes" : NULL), "[%s] a %u-register value needs write code 16", g->name,
            r->size);

    g_autofree char *dir = get(c, g->name, "direction");
    if (dir && (r->direction = index_of(direction_names, dir)) < 0) {
        g_autofree char *valid = g_strjoinv(", ", (char **)direction_names);
        err(c, line_of(g, "direction"), "[%s] direction: expected one of %s, got \"%s\"", g->name, valid, dir);
    }

    g_autofree char *values = get(c, g->name, "values");
    g_autofree char *bits = get(c, g->name, "bits");
    if (values || bits) {
        const char *key = values ? "values" : "bits";
        gboolean wanted = values ? r->type == WB_REG_ENUM : r->type == WB_REG_BITFIELD;
        g_autoptr(GString) bad = g_string_new(NULL);
        r->names = g_array_new(FALSE, FALSE, sizeof(WbNamedValue));
        guint64 max = values ? (r->size == 1 ? 0xFFFF : 0xFFFFFFFFu) : (guint64)(16 * r->size - 1);
        if (!wanted)
            err(c, line_of(g, key), "[%s] %s belongs to %s registers", g->name, key, values ? "enum" : "bitfield");
        else if (!parse_names(values ? values : bits, r->names, max, bad))
            err(c, line_of(g, key), "[%s] %s: expected NUMBER:name items separated by ';'%s%s", g->name, key,
                bad->len ? ", got " : "", bad->str);
    } else if (r->type == WB_REG_ENUM || r->type == WB_REG_BITFIELD) {
        err(c, g->line, "[%s] an %s register lists its %s (NUMBER:name; ...)", g->name,
            r->type == WB_REG_ENUM ? "enum" : "bitfield", r->type == WB_REG_ENUM ? "values" : "bits");
    }

    g_autofree char *min = get(c, g->name, "min");
    g_autofree char *max = get(c, g->name, "max");
    if (min || max) {
        r->has_range = TRUE;
        if (!min || !max || !wb_parse_double(min, &r->min) || !wb_parse_double(max, &r->max) || r->min > r->max)
            err(c, line_of(g, min ? "min" : "max"), "[%s] min and max: expected two numbers, min <= max", g->name);
        if (!r->writable)
            err(c, line_of(g, min ? "min" : "max"), "[%s] min/max apply to writable registers (access = rw)",
                g->name);
    }

    g_autofree char *value = get(c, g->name, "value");
    if (value) {
        r->has_value = TRUE;
        guint16 words[4];
        g_autoptr(GError) e = NULL;
        if (strcmp(value, "unit-id") == 0) {
            r->value_is_unit_id = TRUE;
        } else if (r->type == WB_REG_STRING) {
            err(c, line_of(g, "value"), "[%s] value: a string register's constant is not supported in format 1",
                g->name);
        } else if (!wb_parse_double(value, &r->value)) {
            err(c, line_of(g, "value"), "[%s] value: expected a number or unit-id, got \"%s\"", g->name, value);
        } else if (type_ok && r->size <= 4 && !wb_map_register_encode(r, r->value, words, &e)) {
            err(c, line_of(g, "value"), "[%s] value: %s", g->name, e->message);
        }
        if (r->quantity)
            err(c, line_of(g, "value"), "[%s] a register with a quantity is filled from points; drop 'value'",
                g->name);
    }
    r->default_value = get(c, g->name, "default");
    if (r->default_value) {
        double d;
        if (!r->quantity)
            err(c, line_of(g, "default"), "[%s] default applies to registers with a quantity", g->name);
        else if (!g_strv_contains(symbolic_defaults, r->default_value) && !wb_parse_double(r->default_value, &d))
            err(c, line_of(g, "default"),
                "[%s] default: expected a number, nominal-voltage, nominal-line-voltage or nominal-frequency, got \"%s\"",
                g->name, r->default_value);
    }
    r->description = get(c, g->name, "description");

    const WbMapTableInfo *ti_info = &map->tables[table];
    guint last = r->address + r->size - 1;
    if (ti_info->has_blocks && !in_ranges(ti_info->blocks, r->address, last))
        err(c, g->line, "[%s] %s lies outside every block in [map] %sblocks", g->name, r->name ? r->name : "",
            table == WB_MAP_HOLDING ? "" : (table == WB_MAP_INPUT ? "input-" : table == WB_MAP_COIL ? "coil-" : "discrete-"));
    if (r->readable && touches_ranges(ti_info->no_read, r->address, last))
        err(c, g->line, "[%s] %s lies in a no-read range but can be read (access = w if it is write-only)", g->name,
            r->name ? r->name : "");
    g_ptr_array_add(map->registers, r);
}

static int compare_blocks(gconstpointer a, gconstpointer b)
{
    return (int)((const WbMapBlock *)a)->start - (int)((const WbMapBlock *)b)->start;
}

static int compare_registers(gconstpointer a, gconstpointer b)
{
    const WbMapRegister *ra = *(WbMapRegister *const *)a, *rb = *(WbMapRegister *const *)b;
    if (ra->table != rb->table)
        return (int)rb->table - (int)ra->table; /* holding, input, discrete, coil */
    return (int)ra->address - (int)rb->address;
}

WbMap *wb_map_parse_text(const char *path, const char *text, GError **error)
{
    g_autoptr(WbMap) map = g_new0(WbMap, 1);
    map->ref = 1;
    map->path = g_strdup(path);
    g_autofree char *base = g_path_get_basename(path);
    if (g_str_has_suffix(base, ".map"))
        base[strlen(base) - 4] = '\0';
    map->name = g_strdup(base);
    map->registers = g_ptr_array_new_with_free_func(register_free);
    map->direction = -1;
    for (int t = 0; t < 4; t++) {
        map->tables[t].blocks = g_array_new(FALSE, FALSE, sizeof(WbMapBlock));
        map->tables[t].no_read = g_array_new(FALSE, FALSE, sizeof(WbMapBlock));
    }

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

    Ctx c = {path, kf, errors};
    WbKfGroup *mg = wb_kf_scan_find(scan, "map");
    if (!mg) {
        err(&c, 1, "missing the [map] section (format, model, blocks)");
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, errors->str);
        return NULL;
    }
    parse_map_group(&c, map, mg);
    for (int t = 0; t < 4; t++)
        g_array_sort(map->tables[t].blocks, compare_blocks);
    g_autofree char *order = get(&c, "map", "word-order");
    g_autofree char *border = get(&c, "map", "byte-order");
    if (order && strcmp(order, "high-first") != 0 && strcmp(order, "low-first") != 0)
        err(&c, line_of(mg, "word-order"), "[map] word-order: expected high-first or low-first, got \"%s\"", order);
    if (border && strcmp(border, "big") != 0 && strcmp(border, "little") != 0)
        err(&c, line_of(mg, "byte-order"), "[map] byte-order: expected big or little, got \"%s\"", border);
    gboolean low_words = order && strcmp(order, "low-first") == 0;
    gboolean little_bytes = border && strcmp(border, "little") == 0;

    for (guint i = 0; i < scan->groups->len; i++) {
        WbKfGroup *g = g_ptr_array_index(scan->groups, i);
        if (g == mg)
            continue;
        const char *space = strchr(g->name, ' ');
        g_autofree char *tname = space ? g_strndup(g->name, (gsize)(space - g->name)) : g_strdup(g->name);
        int table = index_of(table_names, tname);
        if (!space || table < 0) {
            err(&c, g->line, "[%s] expected [map] or [<table> <address>] with table holding, input, coil or discrete",
                g->name);
            continue;
        }
        parse_register(&c, map, g, (guint)table, space + 1, low_words, little_bytes);
    }
    if (!map->tables[WB_MAP_HOLDING].has_blocks && !map->tables[WB_MAP_INPUT].has_blocks &&
        !map->tables[WB_MAP_COIL].has_blocks && !map->tables[WB_MAP_DISCRETE].has_blocks &&
        map->registers->len == 0)
        err(&c, mg->line, "[map] no registers and no blocks: the map describes nothing");
    g_ptr_array_sort(map->registers, compare_registers);
    for (guint i = 1; i < map->registers->len; i++) {
        WbMapRegister *a = g_ptr_array_index(map->registers, i - 1);
        WbMapRegister *b = g_ptr_array_index(map->registers, i);
        if (a->table == b->table && a->address + a->size > b->address)
            err(&c, b->line, "register %s at 0x%04X overlaps %s at 0x%04X (line %d)", b->name, b->address, a->name,
                a->address, a->line);
    }
    if (map->read_fc4) {
        /* FC04 reads input registers; "read-codes = 3;4" says the device
         * has none and answers FC04 from its holding registers */
        gboolean inputs = map->tables[WB_MAP_INPUT].has_blocks;
        for (guint i = 0; i < map->registers->len && !inputs; i++)
            inputs = ((const WbMapRegister *)g_ptr_array_index(map->registers, i))->table == WB_MAP_INPUT;
        if (inputs)
            err(&c, line_of(mg, "read-codes"),
                "[map] read-codes: 4 reads the input registers of this map; holding registers are read with 3");
    }
    for (guint i = 0; i < map->registers->len; i++) {
        const WbMapRegister *r = g_ptr_array_index(map->registers, i);
        if (r->writable && r->table == WB_MAP_HOLDING && r->size > map->max_write)
            err(&c, r->line, "[holding %u] %s is %u registers, more than one write may carry (max-write = %u)",
                r->doc_address, r->name, r->size, map->max_write);
    }
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
    return wb_map_parse_text(path, text, error);
}

WbMap *wb_map_load(WbInstance *instance, const char *name, GError **error)
{
    g_return_val_if_fail(instance != NULL && name != NULL, NULL);
    g_autofree char *rel = strchr(name, '/') ? g_strdup(name) : g_strdup_printf("devices/%s.map", name);
    g_autofree char *path = wb_instance_find_data_file(instance, rel, error);
    if (!path)
        return NULL;
    return wb_map_load_file(path, error);
}

gboolean wb_map_readable(const WbMap *map, guint table, guint addr)
{
    const WbMapTableInfo *t = &map->tables[table];
    if (in_ranges(t->no_read, addr, addr))
        return FALSE;
    if (t->has_blocks)
        return in_ranges(t->blocks, addr, addr);
    for (guint i = 0; i < map->registers->len; i++) {
        const WbMapRegister *r = g_ptr_array_index(map->registers, i);
        if (r->table == table && addr >= r->address && addr < r->address + r->size)
            return r->readable;
    }
    return FALSE;
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

guint wb_map_get_baud(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 0);
    return map->baud;
}

guint wb_map_get_max_read(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 125);
    return map->max_read;
}

guint wb_map_get_max_write(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 0);
    return map->max_write;
}

gboolean wb_map_register_get_range(const WbMapRegister *reg, double *min, double *max)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    if (min)
        *min = reg->min;
    if (max)
        *max = reg->max;
    return reg->has_range;
}

gint64 wb_map_get_min_delay(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 0);
    return map->min_delay_us;
}

gint64 wb_map_get_turnaround(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, 0);
    return map->turnaround_us;
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

guint wb_map_register_get_table(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, WB_MAP_HOLDING);
    return reg->table;
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

gboolean wb_map_register_is_string(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    return reg->type == WB_REG_STRING;
}

gboolean wb_map_register_is_flash(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    return reg->flash;
}

gboolean wb_map_register_reads_with(const WbMapRegister *reg, guint function)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    return function < 32 && (reg->read_fcs & FC_BIT(function)) != 0;
}

gboolean wb_map_register_writes_with(const WbMapRegister *reg, guint function)
{
    g_return_val_if_fail(reg != NULL, FALSE);
    return function < 32 && (reg->write_fcs & FC_BIT(function)) != 0;
}

int wb_map_register_get_direction(const WbMapRegister *reg)
{
    g_return_val_if_fail(reg != NULL, -1);
    return reg->direction;
}

int wb_map_get_direction(const WbMap *map)
{
    g_return_val_if_fail(map != NULL, -1);
    return map->direction;
}

const char *wb_map_register_get_value_name(const WbMapRegister *reg, guint64 value)
{
    g_return_val_if_fail(reg != NULL, NULL);
    for (guint i = 0; reg->names && i < reg->names->len; i++) {
        const WbNamedValue *nv = &g_array_index(reg->names, WbNamedValue, i);
        if (nv->value == value)
            return nv->name;
    }
    return NULL;
}

/* ---- codec -------------------------------------------------------------- */

static guint16 swap_bytes(const WbMapRegister *reg, guint16 w)
{
    return reg->little_bytes ? (guint16)((w << 8) | (w >> 8)) : w;
}

/* words[] <- the n-word big-endian integer @v, in the register's orders */
static void put_words(const WbMapRegister *reg, guint64 v, guint n, guint16 *words)
{
    for (guint i = 0; i < n; i++) {
        guint shift = 16 * (n - 1 - i); /* most significant word first */
        guint16 w = (guint16)(v >> shift);
        words[reg->low_word_first ? n - 1 - i : i] = swap_bytes(reg, w);
    }
}

static guint64 get_words(const WbMapRegister *reg, const guint16 *words, guint n)
{
    guint64 v = 0;
    for (guint i = 0; i < n; i++) {
        guint16 w = swap_bytes(reg, words[reg->low_word_first ? n - 1 - i : i]);
        v = (v << 16) | w;
    }
    return v;
}

static gboolean named_value_ok(const WbMapRegister *reg, guint64 v)
{
    if (reg->type == WB_REG_ENUM)
        return wb_map_register_get_value_name(reg, v) != NULL;
    for (guint b = 0; b < 64; b++) /* a bitfield: only the named bits */
        if ((v >> b) & 1 && !wb_map_register_get_value_name(reg, b))
            return FALSE;
    return TRUE;
}

gboolean wb_map_register_encode(const WbMapRegister *reg, double value, guint16 *words, GError **error)
{
    g_return_val_if_fail(reg != NULL && words != NULL, FALSE);
    double raw = (value - reg->offset) / reg->scale;

    if (!isfinite(raw)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s: %g is not a finite value",
                    reg->name, value);
        return FALSE;
    }
    if (reg->type == WB_REG_STRING) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                    "%s: a string register takes text (wb_map_register_encode_string)", reg->name);
        return FALSE;
    }
    if (reg->type == WB_REG_F32 || reg->type == WB_REG_F64) {
        if (reg->type == WB_REG_F32 && fabs(raw) > FLT_MAX) {
            g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                        "%s: %g%s%s does not fit a 32-bit float", reg->name, value, *reg->unit ? " " : "",
                        reg->unit);
            return FALSE;
        }
        if (reg->type == WB_REG_F32) {
            union {
                float f;
                guint32 u;
            } conv = {.f = (float)raw};
            put_words(reg, conv.u, 2, words);
        } else {
            union {
                double d;
                guint64 u;
            } conv = {.d = raw};
            put_words(reg, conv.u, 4, words);
        }
        return TRUE;
    }
    double lo, hi;
    gboolean is_signed = reg->type == WB_REG_S16 || reg->type == WB_REG_S32 || reg->type == WB_REG_S64;
    guint bits = 16 * reg->size;
    if (reg->type == WB_REG_BIT)
        bits = 1;
    if (is_signed) {
        lo = -ldexp(1.0, (int)bits - 1);
        hi = ldexp(1.0, (int)bits - 1) - 1;
    } else {
        lo = 0;
        hi = ldexp(1.0, (int)bits) - 1;
    }
    /* 64-bit: only the integers a double holds exactly */
    lo = MAX(lo, -9007199254740992.0);
    hi = MIN(hi, 9007199254740992.0);
    double r = nearbyint(raw);
    if (r < lo || r > hi) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                    "%s: %g%s%s (raw %.0f) does not fit %s (%.0f..%.0f)", reg->name, value, *reg->unit ? " " : "",
                    reg->unit, r, type_names[reg->type], lo, hi);
        return FALSE;
    }
    guint64 v = is_signed ? (guint64)(gint64)r : (guint64)r;
    if ((reg->type == WB_REG_ENUM || reg->type == WB_REG_BITFIELD) && !named_value_ok(reg, v)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s: %.0f is not one of its %s",
                    reg->name, r, reg->type == WB_REG_ENUM ? "values" : "named bits");
        return FALSE;
    }
    if (reg->type == WB_REG_BIT) {
        words[0] = (guint16)v;
        return TRUE;
    }
    if (bits < 64)
        v &= (G_GUINT64_CONSTANT(1) << bits) - 1;
    put_words(reg, v, reg->size, words);
    return TRUE;
}

double wb_map_register_decode(const WbMapRegister *reg, const guint16 *words)
{
    g_return_val_if_fail(reg != NULL && words != NULL, NAN);
    double raw = 0;
    switch (reg->type) {
    case WB_REG_U16:
    case WB_REG_U32:
    case WB_REG_U64:
    case WB_REG_BITFIELD:
    case WB_REG_ENUM:
        raw = (double)get_words(reg, words, reg->size);
        break;
    case WB_REG_S16:
        raw = (gint16)get_words(reg, words, 1);
        break;
    case WB_REG_S32:
        raw = (gint32)get_words(reg, words, 2);
        break;
    case WB_REG_S64:
        raw = (double)(gint64)get_words(reg, words, 4);
        break;
    case WB_REG_F32: {
        union {
            guint32 u;
            float f;
        } conv = {.u = (guint32)get_words(reg, words, 2)};
        raw = conv.f;
        break;
    }
    case WB_REG_F64: {
        union {
            guint64 u;
            double d;
        } conv = {.u = get_words(reg, words, 4)};
        raw = conv.d;
        break;
    }
    case WB_REG_BIT:
        raw = words[0] ? 1 : 0;
        break;
    case WB_REG_STRING:
        return NAN;
    }
    return raw * reg->scale + reg->offset;
}

char *wb_map_register_decode_string(const WbMapRegister *reg, const guint16 *words)
{
    g_return_val_if_fail(reg != NULL && words != NULL, NULL);
    g_return_val_if_fail(reg->type == WB_REG_STRING, NULL);
    GString *s = g_string_sized_new(2 * reg->size);
    for (guint i = 0; i < reg->size; i++) {
        guint16 w = swap_bytes(reg, words[i]);
        char pair[2] = {(char)(w >> 8), (char)(w & 0xFF)};
        for (int k = 0; k < 2; k++)
            if (pair[k])
                g_string_append_c(s, pair[k]);
            else
                goto done;
    }
done:
    while (s->len && s->str[s->len - 1] == ' ')
        g_string_truncate(s, s->len - 1);
    char *text = g_string_free(s, FALSE);
    if (!g_utf8_validate(text, -1, NULL)) {
        char *valid = g_utf8_make_valid(text, -1);
        g_free(text);
        text = valid;
    }
    return text;
}

gboolean wb_map_register_encode_string(const WbMapRegister *reg, const char *text, guint16 *words, GError **error)
{
    g_return_val_if_fail(reg != NULL && text != NULL && words != NULL, FALSE);
    g_return_val_if_fail(reg->type == WB_REG_STRING, FALSE);
    gsize len = strlen(text);
    if (len > 2 * reg->size) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG,
                    "%s: \"%s\" is %zu bytes; the register holds %u", reg->name, text, len, 2 * reg->size);
        return FALSE;
    }
    for (guint i = 0; i < reg->size; i++) {
        guint8 hi = 2 * i < len ? (guint8)text[2 * i] : 0;
        guint8 lo = 2 * i + 1 < len ? (guint8)text[2 * i + 1] : 0;
        words[i] = swap_bytes(reg, (guint16)((hi << 8) | lo));
    }
    return TRUE;
}
