/* Integration tests: `wattbridge --check-map` and `wattbridge --import-csv`,
 * run as a user runs them.
 *
 * - Every map in tests/maps/broken/ is rejected (exit 1) with each error its
 *   "# expect: LINE: MESSAGE" lines announce, as "FILE:LINE: ...MESSAGE...".
 * - Every shipped map in data/devices/ passes (exit 0, "OK").
 * - Every CSV source in data/sources/ imports to exactly the shipped map it
 *   names, so the shipped maps are what the import makes of the datasheet
 *   tables, and the import's errors name the CSV line. */
#include "wbt.h"

#include <string.h>

static const char *srcdir(void)
{
    const char *d = g_getenv("WB_TEST_SRCDIR");
    g_assert_nonnull(d);
    return d;
}

static int compare_paths(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static GPtrArray *files_in(const char *dir, const char *suffix)
{
    GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    const char *name;
    while ((name = g_dir_read_name(d)))
        if (g_str_has_suffix(name, suffix))
            g_ptr_array_add(files, g_build_filename(dir, name, NULL));
    g_ptr_array_sort(files, compare_paths);
    return files;
}

static void test_broken_corpus(void)
{
    g_autofree char *dir = g_build_filename(srcdir(), "tests", "maps", "broken", NULL);
    g_autoptr(GPtrArray) files = files_in(dir, ".map");
    g_assert_cmpuint(files->len, >=, 40);
    for (guint i = 0; i < files->len; i++) {
        const char *path = g_ptr_array_index(files, i);
        g_autofree char *text = NULL;
        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        guint expected = 0;
        g_autofree char *out = NULL, *err = NULL;
        const char *args[] = {"--check-map", path, NULL};
        int code = wbt_run_daemon(args, &out, &err);
        if (code != 1)
            g_error("%s: --check-map exited %d, expected 1\n%s%s", path, code, out, err);
        g_auto(GStrv) reported = g_strsplit(err, "\n", -1);
        for (int l = 0; lines[l]; l++) {
            if (!g_str_has_prefix(lines[l], "# expect: "))
                continue;
            expected++;
            const char *e = lines[l] + strlen("# expect: ");
            const char *sep = strstr(e, ": ");
            g_assert_nonnull(sep);
            g_autofree char *prefix = g_strdup_printf("%s:%.*s: ", path, (int)(sep - e), e);
            const char *message = sep + 2;
            gboolean found = FALSE;
            for (int k = 0; reported[k] && !found; k++)
                found = g_str_has_prefix(reported[k], prefix) && strstr(reported[k] + strlen(prefix), message);
            if (!found)
                g_error("%s: expected an error \"%s...%s\", got:\n%s", path, prefix, message, err);
        }
        g_assert_cmpuint(expected, >, 0);
        /* nothing claims the broken map is fine */
        g_assert_null(strstr(out, "OK"));
    }
    g_test_message("%u broken maps rejected at the right lines", files->len);
}

static void test_shipped_maps(void)
{
    g_autofree char *dir = g_build_filename(srcdir(), "data", "devices", NULL);
    g_autoptr(GPtrArray) files = files_in(dir, ".map");
    g_assert_cmpuint(files->len, >=, 1);
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_ptr_array_add(args, "--check-map");
    for (guint i = 0; i < files->len; i++) {
        if (i)
            g_ptr_array_add(args, "--check-map");
        g_ptr_array_add(args, g_ptr_array_index(files, i));
    }
    g_ptr_array_add(args, NULL);
    g_autofree char *out = NULL, *err = NULL;
    int code = wbt_run_daemon((const char *const *)args->pdata, &out, &err);
    if (code != 0)
        g_error("shipped maps fail --check-map:\n%s%s", out, err);
    for (guint i = 0; i < files->len; i++) {
        g_autofree char *ok = g_strdup_printf("%s: OK: ", (char *)g_ptr_array_index(files, i));
        g_assert_nonnull(strstr(out, ok));
    }
}

/* A good map and a broken one: the good one is still reported OK, the exit
 * status is 1. */
static void test_mixed(void)
{
    g_autofree char *good = g_build_filename(srcdir(), "data", "devices", "chint-dtsu666.map", NULL);
    g_autofree char *bad = g_build_filename(srcdir(), "tests", "maps", "broken", "overlap.map", NULL);
    const char *args[] = {"--check-map", good, "--check-map", bad, NULL};
    g_autofree char *out = NULL, *err = NULL;
    g_assert_cmpint(wbt_run_daemon(args, &out, &err), ==, 1);
    g_assert_nonnull(strstr(out, "chint-dtsu666.map: OK: CHINT DTSU666"));
    g_assert_nonnull(strstr(err, "overlap.map:11: "));
}

/* The shipped maps are what --import-csv makes of their CSV sources. */
static void test_import_sources(void)
{
    g_autofree char *dir = g_build_filename(srcdir(), "data", "sources", NULL);
    g_autoptr(GPtrArray) files = files_in(dir, ".csv");
    g_assert_cmpuint(files->len, >=, 7);
    for (guint i = 0; i < files->len; i++) {
        const char *csv = g_ptr_array_index(files, i);
        g_autofree char *base = g_path_get_basename(csv);
        base[strlen(base) - 4] = '\0';
        g_autofree char *file = g_strconcat(base, ".map", NULL);
        g_autofree char *shipped_path = g_build_filename(srcdir(), "data", "devices", file, NULL);
        g_autofree char *shipped = NULL;
        if (!g_file_get_contents(shipped_path, &shipped, NULL, NULL))
            g_error("%s has no map %s", csv, shipped_path);
        const char *args[] = {"--import-csv", csv, NULL};
        g_autofree char *out = NULL, *err = NULL;
        g_assert_cmpint(wbt_run_daemon(args, &out, &err), ==, 0);
        if (strcmp(out, shipped) != 0)
            g_error("%s differs from wattbridge --import-csv %s: regenerate it", shipped_path, csv);
        g_assert_nonnull(strstr(shipped, "by wattbridge --import-csv"));
    }
}

/* A user's CSV with mistakes: every error names the CSV and its line. */
static void test_import_errors(void)
{
    g_autoptr(WbtScratch) s = wbt_scratch_new();
    g_autofree char *csv = wbt_scratch_write(s, "meter.csv",
        "# A meter\n"                                    /* 1 */
        "#! model = Test\n"                              /* 2 */
        "#! max-read = 300\n"                            /* 3 */
        "table,address,name,type,scale,quantity\n"       /* 4 */
        "input,0,Voltage,f32,,voltage\n"                 /* 5 */
        "input,1,Current,f32,,current\n"                 /* 6: overlaps Voltage */
        "\n"                                             /* 7 */
        "input,4,Power,float,,power\n"                   /* 8: no such type */
        "holding,10,Limit,u16,0.1,powr\n"                /* 9: no such quantity */
        "input,12,\"Name, quoted\",u16,,\n");            /* 10: fine */
    const char *args[] = {"--import-csv", csv, NULL};
    g_autofree char *out = NULL, *err = NULL;
    g_assert_cmpint(wbt_run_daemon(args, &out, &err), ==, 1);
    g_assert_cmpstr(out, ==, "");
    const char *expected[] = {":3: [map] max-read: expected 1..125", ":6: register Current at 0x0001 overlaps Voltage",
                              ":8: [input 4] type: expected one of", ":9: [holding 10] quantity: \"powr\""};
    for (gsize i = 0; i < G_N_ELEMENTS(expected); i++) {
        g_autofree char *want = g_strconcat(csv, expected[i], NULL);
        if (!strstr(err, want))
            g_error("expected \"%s\" in:\n%s", want, err);
    }
    g_assert_null(strstr(err, ":10:"));

    g_autofree char *bad_header = wbt_scratch_write(s, "header.csv", "address,name,kind\n0,a,u16\n");
    const char *args2[] = {"--import-csv", bad_header, NULL};
    g_free(out);
    g_free(err);
    g_assert_cmpint(wbt_run_daemon(args2, &out, &err), ==, 1);
    g_autofree char *unknown = g_strconcat(bad_header, ":1: unknown column \"kind\"", NULL);
    g_autofree char *missing = g_strconcat(bad_header, ":1: the header needs a \"table\" column", NULL);
    g_assert_nonnull(strstr(err, unknown));
    g_assert_nonnull(strstr(err, missing));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/maps/check/broken-corpus", test_broken_corpus);
    g_test_add_func("/maps/check/shipped", test_shipped_maps);
    g_test_add_func("/maps/check/mixed", test_mixed);
    g_test_add_func("/maps/import/sources", test_import_sources);
    g_test_add_func("/maps/import/errors", test_import_errors);
    return g_test_run();
}
