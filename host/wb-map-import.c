/* --import-csv: a datasheet's register table, pasted into CSV, becomes a
 * register map.
 *
 *   # comment lines become the map's header comment (cite the sources)
 *   #! key = value    lines become [map] keys (model, blocks, min-delay, ...)
 *   table,address,name,type,scale,unit,quantity,...   the header: map keys
 *   input,0x0000,Voltage,f32,,V,voltage,...           one row per register
 *
 * Empty cells are left out.  Fields may be quoted ("a, b"; "" for a
 * quote).  The map is validated as it is written; errors name the CSV's
 * file and line. */
#include "wb-map.h"

#include <errno.h>

static const char *const columns[] = {"table", "address", "name", "type", "length", "word-order", "byte-order",
                                      "scale", "offset", "unit", "quantity", "channel", "access", "flash",
                                      "read-codes", "write-codes", "direction", "values", "bits", "value", "min",
                                      "max", "default", "description", NULL};

static gboolean blank(const GString *s)
{
    for (gsize i = 0; i < s->len; i++)
        if (!g_ascii_isspace(s->str[i]))
            return FALSE;
    return TRUE;
}

/* Splits one CSV line; NULL on an unterminated quote. */
static GPtrArray *split_csv(const char *line)
{
    GPtrArray *cells = g_ptr_array_new_with_free_func(g_free);
    GString *cell = g_string_new(NULL);
    gboolean quoted = FALSE;
    for (const char *p = line;; p++) {
        if (quoted) {
            if (!*p) {
                g_string_free(cell, TRUE);
                g_ptr_array_unref(cells);
                return NULL;
            }
            if (*p == '"' && p[1] == '"') {
                g_string_append_c(cell, '"');
                p++;
            } else if (*p == '"') {
                quoted = FALSE;
            } else {
                g_string_append_c(cell, *p);
            }
            continue;
        }
        if (*p == '"' && blank(cell)) {
            /* a quote opens a field only at its start */
            g_string_truncate(cell, 0);
            quoted = TRUE;
        } else if (*p == ',' || !*p) {
            g_ptr_array_add(cells, g_strstrip(g_string_free(cell, FALSE)));
            if (!*p)
                break;
            cell = g_string_new(NULL);
        } else {
            g_string_append_c(cell, *p);
        }
    }
    return cells;
}

/* The output, line by line, each with the CSV line it came from (0: none),
 * so that errors in the generated map can point at the CSV. */
typedef struct {
    GPtrArray *text;
    GArray *csv_line;
} Out;

static void out_add(Out *o, int csv_line, const char *format, ...) G_GNUC_PRINTF(3, 4);
static void out_add(Out *o, int csv_line, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_ptr_array_add(o->text, g_strdup_vprintf(format, args));
    va_end(args);
    g_array_append_val(o->csv_line, csv_line);
}

static char *translate_errors(const char *message, const char *map_path, const char *csv_path, const Out *o)
{
    GString *msg = g_string_new(NULL);
    g_auto(GStrv) parts = g_strsplit(message, "\n", -1);
    g_autofree char *prefix = g_strconcat(map_path, ":", NULL);
    for (int i = 0; parts[i]; i++) {
        const char *p = parts[i];
        char *end = NULL;
        long n = g_str_has_prefix(p, prefix) ? strtol(p + strlen(prefix), &end, 10) : 0;
        if (n >= 1 && (guint)n <= o->csv_line->len)
            g_string_append_printf(msg, "%s%s:%d%s", msg->len ? "\n" : "", csv_path,
                                   g_array_index(o->csv_line, int, n - 1), end);
        else
            g_string_append_printf(msg, "%s%s", msg->len ? "\n" : "", p);
    }
    return g_string_free(msg, FALSE);
}

char *wb_map_import_csv(const char *path, GError **error)
{
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, error))
        return NULL;
    if (!g_utf8_validate(text, -1, NULL)) {
        g_set_error(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, "%s: not valid UTF-8", path);
        return NULL;
    }
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_autofree char *base = g_path_get_basename(path);
    Out head = {g_ptr_array_new_with_free_func(g_free), g_array_new(FALSE, FALSE, sizeof(int))};
    Out keys = {g_ptr_array_new_with_free_func(g_free), g_array_new(FALSE, FALSE, sizeof(int))};
    Out body = {g_ptr_array_new_with_free_func(g_free), g_array_new(FALSE, FALSE, sizeof(int))};
    Out all = {g_ptr_array_new_with_free_func(g_free), g_array_new(FALSE, FALSE, sizeof(int))};
    g_autoptr(GString) errors = g_string_new(NULL);
    g_autoptr(GPtrArray) header = NULL;
    gboolean in_comment = FALSE; /* the last body line was a comment */

    for (int i = 0; lines[i]; i++) {
        int lineno = i + 1;
        g_autofree char *line = g_strchomp(g_strdup(lines[i]));
        if (g_str_has_prefix(line, "#!")) {
            out_add(&keys, lineno, "%s", g_strstrip(line + 2));
            continue;
        }
        if (line[0] == '#') {
            /* before the header row: the map's header comment (sources);
             * after it: a comment among the registers, kept in place */
            if (header && !in_comment)
                out_add(&body, 0, "%s", "");
            out_add(header ? &body : &head, lineno, "%s", line);
            in_comment = header != NULL;
            continue;
        }
        if (!*g_strstrip(line))
            continue;
        g_autoptr(GPtrArray) cells = split_csv(line);
        if (!cells) {
            g_string_append_printf(errors, "%s%s:%d: a quoted field does not end on this line",
                                   errors->len ? "\n" : "", path, lineno);
            continue;
        }
        if (!header) {
            header = g_steal_pointer(&cells);
            for (guint c = 0; c < header->len; c++) {
                const char *name = g_ptr_array_index(header, c);
                if (!g_strv_contains(columns, name)) {
                    g_autofree char *valid = g_strjoinv(", ", (char **)columns);
                    g_string_append_printf(errors, "%s%s:%d: unknown column \"%s\"; columns are map keys: %s",
                                           errors->len ? "\n" : "", path, lineno, name, valid);
                }
            }
            const char *required[] = {"table", "address", "name", "type"};
            for (gsize r = 0; r < G_N_ELEMENTS(required); r++) {
                gboolean found = FALSE;
                for (guint c = 0; c < header->len; c++)
                    found |= strcmp(g_ptr_array_index(header, c), required[r]) == 0;
                if (!found)
                    g_string_append_printf(errors, "%s%s:%d: the header needs a \"%s\" column",
                                           errors->len ? "\n" : "", path, lineno, required[r]);
            }
            continue;
        }
        if (cells->len > header->len) {
            g_string_append_printf(errors, "%s%s:%d: %u fields, the header has %u", errors->len ? "\n" : "", path,
                                   lineno, cells->len, header->len);
            continue;
        }
        const char *table = "", *address = "";
        for (guint c = 0; c < cells->len; c++) {
            if (strcmp(g_ptr_array_index(header, c), "table") == 0)
                table = g_ptr_array_index(cells, c);
            if (strcmp(g_ptr_array_index(header, c), "address") == 0)
                address = g_ptr_array_index(cells, c);
        }
        if (!in_comment)
            out_add(&body, 0, "%s", "");
        in_comment = FALSE;
        out_add(&body, lineno, "[%s %s]", table, address);
        /* keys in the canonical column order, so regenerated maps diff well */
        for (const char *const *col = columns + 2; *col; col++)
            for (guint c = 0; c < cells->len; c++) {
                const char *v = g_ptr_array_index(cells, c);
                if (*v && strcmp(g_ptr_array_index(header, c), *col) == 0)
                    out_add(&body, lineno, "%s = %s", *col, v);
            }
    }
    if (!header && !errors->len)
        g_string_append_printf(errors, "%s: no header line (table,address,name,type,...)", path);

    for (guint k = 0; k < head.text->len; k++)
        out_add(&all, g_array_index(head.csv_line, int, k), "%s", (char *)g_ptr_array_index(head.text, k));
    out_add(&all, 0, "#");
    out_add(&all, 0, "# Generated from %s by wattbridge --import-csv: edit the CSV and regenerate.", base);
    out_add(&all, 0, "%s", "");
    int first_key = keys.csv_line->len ? g_array_index(keys.csv_line, int, 0) : 1;
    out_add(&all, first_key, "[map]");
    out_add(&all, first_key, "format = 1");
    for (guint k = 0; k < keys.text->len; k++)
        out_add(&all, g_array_index(keys.csv_line, int, k), "%s", (char *)g_ptr_array_index(keys.text, k));
    for (guint k = 0; k < body.text->len; k++)
        out_add(&all, g_array_index(body.csv_line, int, k), "%s", (char *)g_ptr_array_index(body.text, k));
    g_ptr_array_add(all.text, NULL);
    g_autofree char *joined = g_strjoinv("\n", (char **)all.text->pdata);
    g_ptr_array_remove_index(all.text, all.text->len - 1);
    char *result = g_strconcat(joined, "\n", NULL);

    if (!errors->len) {
        g_autoptr(GError) perr = NULL;
        g_autofree char *virtual_path = g_strconcat(base, ".map", NULL);
        WbMap *map = wb_map_parse_text(virtual_path, result, &perr);
        if (map) {
            wb_map_unref(map);
        } else {
            g_autofree char *msg = translate_errors(perr->message, virtual_path, path, &all);
            g_string_append(errors, msg);
        }
    }
    Out *outs[] = {&head, &keys, &body, &all};
    for (gsize k = 0; k < G_N_ELEMENTS(outs); k++) {
        g_ptr_array_unref(outs[k]->text);
        g_array_unref(outs[k]->csv_line);
    }
    if (errors->len) {
        g_set_error_literal(error, WB_PLUGIN_ERROR, WB_PLUGIN_ERROR_INVALID_CONFIG, errors->str);
        g_free(result);
        return NULL;
    }
    return result;
}
