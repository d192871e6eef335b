/* conf.d: drop-in files, one [section] per instance.
 *
 * Directories are given lowest precedence first.  A file in a later
 * directory replaces a file of the same name in an earlier one; a link to
 * /dev/null masks it.  The remaining files are read in name order across all
 * directories (systemd's and NetworkManager's rules).  GKeyFile parses the
 * values; a line scan beforehand gives every section and key its line
 * number and catches what GKeyFile would merge silently: a section or a key
 * repeated within a file.  The same section in two files is an error naming
 * both, never a merge.
 */
#include "wb-private.h"

#include <errno.h>
#include <stdlib.h>

static void section_free(gpointer data)
{
    WbConfdSection *s = data;
    g_free(s->name);
    g_free(s->file);
    if (s->keyfile)
        g_key_file_unref(s->keyfile);
    g_ptr_array_unref(s->keys);
    g_hash_table_unref(s->key_lines);
    g_free(s);
}

void wb_confd_free(WbConfd *confd)
{
    if (!confd)
        return;
    g_ptr_array_unref(confd->sections);
    g_ptr_array_unref(confd->errors);
    g_ptr_array_unref(confd->files);
    g_ptr_array_unref(confd->masked);
    g_free(confd);
}

WbConfdSection *wb_confd_find(WbConfd *confd, const char *name)
{
    for (guint i = 0; i < confd->sections->len; i++) {
        WbConfdSection *s = g_ptr_array_index(confd->sections, i);
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

static void add_error(WbConfd *confd, const char *format, ...) G_GNUC_PRINTF(2, 3);
static void add_error(WbConfd *confd, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_ptr_array_add(confd->errors, g_strdup_vprintf(format, args));
    va_end(args);
}

static gboolean is_masked(const char *path)
{
    g_autofree char *real = realpath(path, NULL);
    return real && strcmp(real, "/dev/null") == 0;
}

/* Section names become point prefixes: the same rule as a point level,
 * without dots, and "host" is the host's own. */
static gboolean section_name_ok(const char *name)
{
    if (!*name || strcmp(name, "host") == 0)
        return FALSE;
    for (const char *p = name; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_')
            return FALSE;
    return TRUE;
}

/* Adds a section for each [header] of @text. */
static void scan_file(WbConfd *confd, const char *path, const char *text, GKeyFile *keyfile)
{
    g_autoptr(WbKfScan) scan = wb_kf_scan(path, text);
    g_ptr_array_extend_and_steal(confd->errors, g_steal_pointer(&scan->errors));
    scan->errors = g_ptr_array_new();

    for (guint j = 0; j < scan->groups->len; j++) {
        WbKfGroup *g = g_ptr_array_index(scan->groups, j);
        WbConfdSection *s = g_new0(WbConfdSection, 1);
        s->name = g_strdup(g->name);
        s->file = g_strdup(path);
        s->line = g->line;
        s->keyfile = keyfile ? g_key_file_ref(keyfile) : NULL;
        s->keys = g_ptr_array_ref(g->keys);
        s->key_lines = g_hash_table_ref(g->key_lines);
        s->broken = g->broken || !keyfile;
        if (!section_name_ok(s->name)) {
            add_error(confd,
                      "%s:%d: [%s]: an instance name may use only letters, digits, '-' and '_' "
                      "(it prefixes the instance's point names), and 'host' is reserved",
                      path, s->line, s->name);
            s->broken = TRUE;
        }
        WbConfdSection *other = wb_confd_find(confd, s->name);
        if (other) {
            add_error(confd, "%s:%d: section [%s] is also defined at %s:%d; an instance may be defined "
                      "only once (rename one, or mask the other file with a link to /dev/null)",
                      path, s->line, s->name, other->file, other->line);
            other->broken = TRUE;
            section_free(s);
            continue;
        }
        g_ptr_array_add(confd->sections, s);
    }
}

static void read_file(WbConfd *confd, const char *path)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) error = NULL;

    if (!g_file_get_contents(path, &text, NULL, &error)) {
        add_error(confd, "%s: cannot read: %s", path, error->message);
        return;
    }
    if (!g_utf8_validate(text, -1, NULL)) {
        add_error(confd, "%s: not valid UTF-8", path);
        return;
    }
    g_autoptr(GKeyFile) keyfile = g_key_file_new();
    g_key_file_set_list_separator(keyfile, ';');
    if (!g_key_file_load_from_data(keyfile, text, -1, G_KEY_FILE_NONE, &error)) {
        add_error(confd, "%s: %s", path, error->message);
        scan_file(confd, path, text, NULL); /* for line numbers; the sections stay broken */
        return;
    }
    g_ptr_array_add(confd->files, g_strdup(path));
    scan_file(confd, path, text, keyfile);
}

static int compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

WbConfd *wb_confd_load(const char *const *dirs)
{
    WbConfd *confd = g_new0(WbConfd, 1);
    confd->sections = g_ptr_array_new_with_free_func(section_free);
    confd->errors = g_ptr_array_new_with_free_func(g_free);
    confd->files = g_ptr_array_new_with_free_func(g_free);
    confd->masked = g_ptr_array_new_with_free_func(g_free);

    /* basename -> path; later directories replace earlier ones */
    g_autoptr(GHashTable) chosen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint d = 0; dirs && dirs[d]; d++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GDir) dir = g_dir_open(dirs[d], 0, &error);
        if (!dir) {
            if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                add_error(confd, "%s: %s", dirs[d], error->message);
            continue;
        }
        const char *name;
        while ((name = g_dir_read_name(dir))) {
            if (!g_str_has_suffix(name, ".conf") || name[0] == '.')
                continue;
            char *path = g_build_filename(dirs[d], name, NULL);
            if (!is_masked(path) && !g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
                g_free(path);
                continue;
            }
            g_hash_table_replace(chosen, g_strdup(name), path);
        }
    }
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    GHashTableIter iter;
    gpointer key;
    g_hash_table_iter_init(&iter, chosen);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        g_ptr_array_add(names, key);
    g_ptr_array_sort(names, compare_names);
    for (guint i = 0; i < names->len; i++) {
        const char *path = g_hash_table_lookup(chosen, g_ptr_array_index(names, i));
        if (is_masked(path)) {
            g_ptr_array_add(confd->masked, g_strdup(path));
            continue;
        }
        read_file(confd, path);
    }
    return confd;
}

gboolean wb_confd_section_disabled(const WbConfdSection *section)
{
    if (!section->keyfile || !g_hash_table_contains(section->key_lines, WB_KEY_ENABLED))
        return FALSE;
    g_autoptr(GError) error = NULL;
    g_autofree char *value = g_key_file_get_string(section->keyfile, section->name, WB_KEY_ENABLED, &error);
    if (!value)
        return FALSE;
    g_strstrip(value);
    return g_ascii_strcasecmp(value, "false") == 0 || g_ascii_strcasecmp(value, "no") == 0 ||
           g_ascii_strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0;
}
