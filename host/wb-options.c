/* Declared options: validation of a conf.d section against a plugin's
 * option table, and the typed getters plugins read them with. */
#include "wb-private.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

typedef struct {
    const WbOptionSpec *spec;
    char *raw;        /* as written (or the default) */
    int line;         /* 0: the default */
    gint64 i;         /* INT; DURATION in microseconds */
    double d;
    gboolean b;
    int e;
    char **list;
} Value;

struct _WbConfig {
    char *section;
    char *file;
    int line;
    GHashTable *values;     /* key -> Value* (given and defaulted) */
    GHashTable *families;   /* prefix -> GPtrArray of full keys, NULL-terminated */
    char **empty_list;
};

static const char *type_name(guint32 type)
{
    switch (type) {
    case WB_OPTION_STRING: return "string";
    case WB_OPTION_INT: return "integer";
    case WB_OPTION_DOUBLE: return "number";
    case WB_OPTION_BOOL: return "boolean";
    case WB_OPTION_DURATION: return "duration";
    case WB_OPTION_ENUM: return "enum";
    case WB_OPTION_LIST: return "list";
    case WB_OPTION_POINT: return "point";
    default: return "?";
    }
}

static void value_free(gpointer data)
{
    Value *v = data;
    g_free(v->raw);
    g_strfreev(v->list);
    g_free(v);
}

void wb_config_free(WbConfig *config)
{
    if (!config)
        return;
    g_free(config->section);
    g_free(config->file);
    g_hash_table_unref(config->values);
    g_hash_table_unref(config->families);
    g_strfreev(config->empty_list);
    g_free(config);
}

gboolean wb_parse_duration(const char *text, gint64 *out_us)
{
    char *end = NULL;
    errno = 0;
    double v = g_ascii_strtod(text, &end);
    if (end == text || errno || !isfinite(v) || v < 0)
        return FALSE;
    while (*end == ' ')
        end++;
    double factor;
    if (!*end || strcmp(end, "s") == 0)
        factor = 1e6;
    else if (strcmp(end, "ms") == 0)
        factor = 1e3;
    else if (strcmp(end, "min") == 0)
        factor = 60e6;
    else if (strcmp(end, "h") == 0)
        factor = 3600e6;
    else
        return FALSE;
    double us = v * factor;
    if (us > (double)G_MAXINT64 / 2)
        return FALSE;
    *out_us = (gint64)llround(us);
    return TRUE;
}

gboolean wb_parse_int(const char *text, gint64 *out)
{
    char *end = NULL;
    const char *p = text;
    gboolean neg = FALSE;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    int base = (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) ? 16 : 10;
    if (!g_ascii_isxdigit(base == 16 ? p[2] : p[0]))
        return FALSE;
    errno = 0;
    guint64 v = g_ascii_strtoull(base == 16 ? p + 2 : p, &end, base);
    if (errno || *end || v > (guint64)G_MAXINT64)
        return FALSE;
    *out = neg ? -(gint64)v : (gint64)v;
    return TRUE;
}

gboolean wb_parse_double(const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = g_ascii_strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v))
        return FALSE;
    *out = v;
    return TRUE;
}

static gboolean parse_bool(const char *text, gboolean *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (gsize i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (g_ascii_strcasecmp(text, yes[i]) == 0) {
            *out = TRUE;
            return TRUE;
        }
        if (g_ascii_strcasecmp(text, no[i]) == 0) {
            *out = FALSE;
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean has_range(const WbOptionSpec *spec)
{
    return spec->min < spec->max;
}

static char *format_number(double v)
{
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_strdup(g_ascii_formatd(buf, sizeof buf, "%.15g", v));
}

static char *describe_expected(const WbOptionSpec *spec)
{
    g_autofree char *min = format_number(spec->min);
    g_autofree char *max = format_number(spec->max);
    switch (spec->type) {
    case WB_OPTION_INT:
        return has_range(spec) ? g_strdup_printf("an integer from %s to %s", min, max)
                               : g_strdup("an integer");
    case WB_OPTION_DOUBLE:
        return has_range(spec) ? g_strdup_printf("a number from %s to %s", min, max)
                               : g_strdup("a number");
    case WB_OPTION_DURATION:
        return has_range(spec)
                   ? g_strdup_printf("a duration from %s s to %s s (seconds, or with ms, s, min, h)", min, max)
                   : g_strdup("a duration (seconds, or a number with ms, s, min or h)");
    case WB_OPTION_BOOL:
        return g_strdup("true or false");
    case WB_OPTION_ENUM: {
        g_autofree char *joined = g_strjoinv(", ", (char **)spec->values);
        return g_strdup_printf("one of: %s", joined);
    }
    case WB_OPTION_POINT:
        return g_strdup(spec->flags & WB_OPTION_ONE_POINT
                            ? "one point's name (levels of [A-Za-z0-9_.-] separated by '/', no wildcards)"
                            : "a point name (levels of [A-Za-z0-9_.-] separated by '/', wildcards + and #)");
    case WB_OPTION_LIST:
        return g_strdup("a ';'-separated list");
    default:
        return g_strdup("text");
    }
}

/* Parses @text for @spec into @v.  On failure returns FALSE and sets
 * @error to "expected ..., got ...". */
static gboolean parse_value(const WbOptionSpec *spec, const char *text, Value *v, GError **error)
{
    gboolean ok = TRUE;
    double range_value = 0;

    switch (spec->type) {
    case WB_OPTION_STRING:
        break;
    case WB_OPTION_INT:
        ok = wb_parse_int(text, &v->i);
        range_value = (double)v->i;
        break;
    case WB_OPTION_DOUBLE:
        ok = wb_parse_double(text, &v->d);
        range_value = v->d;
        break;
    case WB_OPTION_BOOL:
        ok = parse_bool(text, &v->b);
        break;
    case WB_OPTION_DURATION:
        ok = wb_parse_duration(text, &v->i);
        range_value = (double)v->i / 1e6;
        break;
    case WB_OPTION_ENUM:
        ok = FALSE;
        for (int i = 0; spec->values && spec->values[i]; i++)
            if (strcmp(spec->values[i], text) == 0) {
                v->e = i;
                ok = TRUE;
            }
        break;
    case WB_OPTION_POINT:
        ok = wb_point_name_is_valid(text, !(spec->flags & WB_OPTION_ONE_POINT));
        break;
    case WB_OPTION_LIST: {
        g_auto(GStrv) items = g_strsplit(text, ";", -1);
        GPtrArray *kept = g_ptr_array_new();
        for (int i = 0; items[i]; i++) {
            g_strstrip(items[i]);
            if (*items[i])
                g_ptr_array_add(kept, g_strdup(items[i]));
        }
        g_ptr_array_add(kept, NULL);
        v->list = (char **)g_ptr_array_free(kept, FALSE);
        break;
    }
    default:
        ok = FALSE;
        break;
    }
    if (ok && has_range(spec) &&
        (spec->type == WB_OPTION_INT || spec->type == WB_OPTION_DOUBLE || spec->type == WB_OPTION_DURATION) &&
        (range_value < spec->min || range_value > spec->max))
        ok = FALSE;
    if (!ok) {
        g_autofree char *expected = describe_expected(spec);
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "expected %s, got \"%s\"", expected,
                    text);
    }
    return ok;
}

gboolean wb_option_check_value(const WbOptionSpec *spec, const char *value, GError **error)
{
    Value v = {0};
    gboolean ok = parse_value(spec, value, &v, error);
    g_strfreev(v.list);
    return ok;
}

static const WbOptionSpec *find_spec(const WbOptionSpec *specs, const char *key)
{
    const WbOptionSpec *family = NULL;
    for (const WbOptionSpec *s = specs; s && s->name; s++) {
        if (s->flags & WB_OPTION_FAMILY) {
            gsize n = strlen(s->name);
            if (strncmp(key, s->name, n) == 0 && key[n] != '\0' && (!family || n > strlen(family->name)))
                family = s;
        } else if (strcmp(s->name, key) == 0) {
            return s;
        }
    }
    return family;
}

static char *valid_keys(const WbOptionSpec *specs)
{
    GString *s = g_string_new(WB_KEY_PLUGIN ", " WB_KEY_ENABLED);
    for (const WbOptionSpec *spec = specs; spec && spec->name; spec++) {
        g_string_append(s, ", ");
        g_string_append(s, spec->name);
        if (spec->flags & WB_OPTION_FAMILY)
            g_string_append(s, "<name>");
    }
    return g_string_free(s, FALSE);
}

static void problem(GString *errors, const WbConfdSection *section, int line, const char *key,
                    const char *format, ...) G_GNUC_PRINTF(5, 6);
static void problem(GString *errors, const WbConfdSection *section, int line, const char *key,
                    const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *msg = g_strdup_vprintf(format, args);
    va_end(args);
    if (errors->len)
        g_string_append_c(errors, '\n');
    if (key)
        g_string_append_printf(errors, "%s:%d: [%s] %s: %s", section->file, line, section->name, key, msg);
    else
        g_string_append_printf(errors, "%s:%d: [%s] %s", section->file, line, section->name, msg);
}

WbConfig *wb_config_new(const WbConfdSection *section, const WbOptionSpec *specs, GError **error)
{
    g_autoptr(WbConfig) config = g_new0(WbConfig, 1);
    g_autoptr(GString) errors = g_string_new(NULL);

    config->section = g_strdup(section->name);
    config->file = g_strdup(section->file);
    config->line = section->line;
    config->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, value_free);
    config->families = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
    config->empty_list = g_new0(char *, 1);
    for (const WbOptionSpec *s = specs; s && s->name; s++)
        if (s->flags & WB_OPTION_FAMILY)
            g_hash_table_insert(config->families, (gpointer)s->name, g_ptr_array_new_with_free_func(g_free));

    if (!section->keyfile) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s:%d: [%s] the file could not be parsed",
                    section->file, section->line, section->name);
        return NULL;
    }

    for (guint i = 0; i < section->keys->len; i++) {
        const char *key = g_ptr_array_index(section->keys, i);
        int line = GPOINTER_TO_INT(g_hash_table_lookup(section->key_lines, key));
        g_autoptr(GError) kerr = NULL;
        g_autofree char *raw = g_key_file_get_string(section->keyfile, section->name, key, &kerr);
        if (!raw) {
            problem(errors, section, line, key, "%s", kerr->message);
            continue;
        }
        g_strstrip(raw);
        if (strcmp(key, WB_KEY_PLUGIN) == 0)
            continue; /* the host already used it to find the plugin */
        if (strcmp(key, WB_KEY_ENABLED) == 0) {
            gboolean b;
            if (!parse_bool(raw, &b))
                problem(errors, section, line, key, "expected true or false, got \"%s\"", raw);
            continue;
        }
        const WbOptionSpec *spec = find_spec(specs, key);
        if (!spec) {
            g_autofree char *valid = valid_keys(specs);
            problem(errors, section, line, key, "unknown key; valid keys are: %s", valid);
            continue;
        }
        Value *v = g_new0(Value, 1);
        v->spec = spec;
        v->line = line;
        if (!parse_value(spec, raw, v, &kerr)) {
            problem(errors, section, line, key, "%s", kerr->message);
            value_free(v);
            continue;
        }
        v->raw = g_steal_pointer(&raw);
        g_hash_table_insert(config->values, g_strdup(key), v);
        if (spec->flags & WB_OPTION_FAMILY)
            g_ptr_array_add(g_hash_table_lookup(config->families, spec->name), g_strdup(key));
    }

    for (const WbOptionSpec *s = specs; s && s->name; s++) {
        if (s->flags & WB_OPTION_FAMILY)
            continue;
        if (g_hash_table_contains(config->values, s->name))
            continue;
        if (s->flags & WB_OPTION_REQUIRED) {
            problem(errors, section, section->line, NULL, "missing required key '%s' (%s)", s->name,
                    s->help ? s->help : type_name(s->type));
            continue;
        }
        if (!s->default_value)
            continue;
        Value *v = g_new0(Value, 1);
        v->spec = s;
        g_autoptr(GError) derr = NULL;
        if (!parse_value(s, s->default_value, v, &derr)) {
            /* the loader checks defaults; this is a plugin bug */
            problem(errors, section, section->line, s->name, "the plugin's default %s", derr->message);
            value_free(v);
            continue;
        }
        v->raw = g_strdup(s->default_value);
        g_hash_table_insert(config->values, g_strdup(s->name), v);
    }

    /* NULL-terminate the family key arrays */
    GHashTableIter iter;
    gpointer arr;
    g_hash_table_iter_init(&iter, config->families);
    while (g_hash_table_iter_next(&iter, NULL, &arr))
        g_ptr_array_add(arr, NULL);

    if (errors->len) {
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, errors->str);
        return NULL;
    }
    return g_steal_pointer(&config);
}

static const Value *get(const WbConfig *config, const char *key, guint32 type)
{
    g_return_val_if_fail(config != NULL && key != NULL, NULL);
    const Value *v = g_hash_table_lookup(config->values, key);
    if (v && type && v->spec->type != type) {
        g_critical("wb_config_get: key '%s' is a %s option, not a %s", key, type_name(v->spec->type),
                   type_name(type));
        return NULL;
    }
    return v;
}

const char *wb_config_get_string(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, 0);
    return v ? v->raw : NULL;
}

gint64 wb_config_get_int(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, WB_OPTION_INT);
    return v ? v->i : 0;
}

double wb_config_get_double(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, WB_OPTION_DOUBLE);
    return v ? v->d : 0.0;
}

gboolean wb_config_get_bool(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, WB_OPTION_BOOL);
    return v ? v->b : FALSE;
}

gint64 wb_config_get_duration(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, WB_OPTION_DURATION);
    return v ? v->i : 0;
}

int wb_config_get_enum(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, WB_OPTION_ENUM);
    return v ? v->e : -1;
}

const char *const *wb_config_get_list(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, WB_OPTION_LIST);
    return (const char *const *)(v ? v->list : config->empty_list);
}

gboolean wb_config_has_key(const WbConfig *config, const char *key)
{
    const Value *v = get(config, key, 0);
    return v && v->line > 0;
}

const char *const *wb_config_get_family(const WbConfig *config, const char *prefix)
{
    g_return_val_if_fail(config != NULL && prefix != NULL, NULL);
    GPtrArray *keys = g_hash_table_lookup(config->families, prefix);
    if (!keys) {
        g_critical("wb_config_get_family: '%s' is not a declared family", prefix);
        return (const char *const *)config->empty_list;
    }
    return (const char *const *)keys->pdata;
}

const char *wb_config_get_file(const WbConfig *config)
{
    g_return_val_if_fail(config != NULL, NULL);
    return config->file;
}

int wb_config_get_key_line(const WbConfig *config, const char *key)
{
    g_return_val_if_fail(config != NULL, 0);
    const Value *v = key ? g_hash_table_lookup(config->values, key) : NULL;
    return v && v->line ? v->line : config->line;
}

void wb_config_set_error(const WbConfig *config, GError **error, const char *key, const char *format, ...)
{
    g_return_if_fail(config != NULL);
    va_list args;
    va_start(args, format);
    g_autofree char *msg = g_strdup_vprintf(format, args);
    va_end(args);
    const Value *v = key ? g_hash_table_lookup(config->values, key) : NULL;
    int line = v && v->line ? v->line : config->line;
    if (key)
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s:%d: [%s] %s: %s", config->file,
                    line, config->section, key, msg);
    else
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s:%d: [%s] %s", config->file, line,
                    config->section, msg);
}

void wb_option_describe(const WbOptionSpec *spec, GString *out)
{
    g_autofree char *expected = describe_expected(spec);
    if (spec->flags & WB_OPTION_FAMILY)
        g_string_append_printf(out, "  %s<name> = <%s>", spec->name, type_name(spec->type));
    else
        g_string_append_printf(out, "  %s = <%s>", spec->name, type_name(spec->type));
    if (spec->unit && *spec->unit)
        g_string_append_printf(out, " [%s]", spec->unit);
    if (spec->flags & WB_OPTION_REQUIRED)
        g_string_append(out, " (required)");
    else if (spec->default_value && !(spec->flags & WB_OPTION_SECRET))
        g_string_append_printf(out, " (default: %s)", *spec->default_value ? spec->default_value : "\"\"");
    if (spec->flags & WB_OPTION_SECRET)
        g_string_append(out, " (secret)");
    g_string_append_c(out, '\n');
    if (spec->help)
        g_string_append_printf(out, "      %s\n", spec->help);
    if (spec->flags & WB_OPTION_FAMILY)
        g_string_append_printf(out, "      A key family: any number of keys starting with \"%s\".\n", spec->name);
    g_string_append_printf(out, "      Expects %s.\n", expected);
}
