/* A line scan of a GKeyFile-format text: where every [group] and key is, and
 * the mistakes GKeyFile itself would accept silently or report without a
 * line number (a repeated group or key, a line that is neither).  conf.d
 * files and register maps both use it. */
#include "wb-private.h"

static void group_free(gpointer data)
{
    WbKfGroup *g = data;
    g_free(g->name);
    g_ptr_array_unref(g->keys);
    g_hash_table_unref(g->key_lines);
    g_free(g);
}

void wb_kf_scan_free(WbKfScan *scan)
{
    if (!scan)
        return;
    g_ptr_array_unref(scan->groups);
    g_ptr_array_unref(scan->errors);
    g_free(scan);
}

static void add_error(WbKfScan *scan, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void add_error(WbKfScan *scan, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_ptr_array_add(scan->errors, g_strdup_vprintf(format, args));
    va_end(args);
}

WbKfGroup *wb_kf_scan_find(WbKfScan *scan, const char *name)
{
    for (guint i = 0; i < scan->groups->len; i++) {
        WbKfGroup *g = g_ptr_array_index(scan->groups, i);
        if (strcmp(g->name, name) == 0)
            return g;
    }
    return NULL;
}

int wb_kf_group_key_line(const WbKfGroup *group, const char *key)
{
    return GPOINTER_TO_INT(g_hash_table_lookup(group->key_lines, key));
}

WbKfScan *wb_kf_scan(const char *path, const char *text)
{
    WbKfScan *scan = g_new0(WbKfScan, 1);
    scan->groups = g_ptr_array_new_with_free_func(group_free);
    scan->errors = g_ptr_array_new_with_free_func(g_free);

    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    WbKfGroup *current = NULL;
    for (int i = 0; lines[i]; i++) {
        int lineno = i + 1;
        g_autofree char *line = g_strstrip(g_strdup(lines[i]));
        if (!*line || *line == '#') /* GKeyFile's only comment character */
            continue;
        if (*line == '[') {
            char *close = strrchr(line, ']');
            if (!close || close[1] != '\0') {
                add_error(scan, "%s:%d: expected a section header like [name], got \"%s\"", path, lineno, line);
                current = NULL;
                continue;
            }
            *close = '\0';
            const char *name = line + 1;
            WbKfGroup *dup = wb_kf_scan_find(scan, name);
            if (dup) {
                add_error(scan, "%s:%d: section [%s] repeated; it is already defined at %s:%d", path, lineno,
                          name, path, dup->line);
                dup->broken = TRUE;
                current = dup;
                continue;
            }
            current = g_new0(WbKfGroup, 1);
            current->name = g_strdup(name);
            current->line = lineno;
            current->keys = g_ptr_array_new_with_free_func(g_free);
            current->key_lines = g_hash_table_new(g_str_hash, g_str_equal);
            g_ptr_array_add(scan->groups, current);
            continue;
        }
        char *eq = strchr(line, '=');
        if (!eq) {
            add_error(scan, "%s:%d: expected \"key = value\", a [section] header or a # comment, got \"%s\"", path,
                      lineno, line);
            if (current)
                current->broken = TRUE;
            continue;
        }
        *eq = '\0';
        g_strstrip(line);
        if (!current) {
            add_error(scan, "%s:%d: key '%s' comes before any [section]", path, lineno, line);
            continue;
        }
        if (g_hash_table_contains(current->key_lines, line)) {
            add_error(scan, "%s:%d: [%s] key '%s' repeated; it is already set at line %d (a key may appear only once)",
                      path, lineno, current->name, line, wb_kf_group_key_line(current, line));
            current->broken = TRUE;
            continue;
        }
        char *key = g_strdup(line);
        g_ptr_array_add(current->keys, key);
        g_hash_table_insert(current->key_lines, key, GINT_TO_POINTER(lineno));
    }
    return scan;
}
