/* Benchmark: read-cycle time of every shipped map under the planner's cost
 * model (request and response bytes x 11 bits / baud + 2 x t3.5 + the
 * map's turnaround and min-delay, wb_modbus_request_time()), reading all
 * of a map's readable registers:
 *
 *   one per request   the baseline: each register its own request
 *   planner           wb_read_plan_new()
 *   minimum           the exhaustive minimum, computed here without the
 *                     planner: over every set partition of the registers
 *                     (dynamic programming over subsets) when a table has
 *                     at most 14 of them, else a shortest path through
 *                     every partition into runs of consecutive registers
 *                     (tests/unit/test-plan.c checks that runs lose
 *                     nothing against all set partitions)
 *
 * at the map's serial baud rate (9600 when it states none).  The Growatt
 * maps appear twice: as shipped (min-delay 850 ms, where the fewest
 * requests win) and with min-delay 0.  Prints a table; judges nothing.
 * Run with: meson test -C build --benchmark --verbose */
#include "wb-map.h"
#include "wbt-partitions.h"

#include <math.h>
#include <stdio.h>

/* ---- the minimum, without the planner ---------------------------------- */

/* The lowest function code that reads [first, end) of @table in one
 * request, 0 when none: within max-read; inside one block when blocks are
 * declared; every address readable; one code every touched register
 * allows. */
static guint span_function(const WbMap *map, guint table, guint first, guint end)
{
    gboolean bits = table == WB_MAP_COIL || table == WB_MAP_DISCRETE;
    if (end - first > (bits ? map->max_read_bits : map->max_read))
        return 0;
    const WbMapTableInfo *t = &map->tables[table];
    if (t->has_blocks) {
        gboolean one = FALSE;
        for (guint b = 0; b < t->blocks->len; b++) {
            const WbMapBlock *blk = &g_array_index(t->blocks, WbMapBlock, b);
            one |= first >= blk->start && end - 1 <= blk->end;
        }
        if (!one)
            return 0;
    }
    for (guint a = first; a < end; a++)
        if (!wb_map_readable(map, table, a))
            return 0;
    guint fcs = ~0u;
    for (guint i = 0; i < map->registers->len; i++) {
        const WbMapRegister *r = g_ptr_array_index(map->registers, i);
        if (r->table == table && r->address < end && r->address + r->size > first)
            fcs &= r->read_fcs;
    }
    for (guint fc = 1; fc <= 4; fc++)
        if (fcs & FC_BIT(fc))
            return fc;
    return 0;
}

static double span_time(const WbMap *map, guint table, guint first, guint end, guint baud)
{
    guint fc = span_function(map, table, first, end);
    return fc ? wb_modbus_request_time(map, fc, end - first, baud) : INFINITY;
}

/* All set partitions of @r[0..n), n <= 14. */
typedef struct {
    const WbMap *map;
    const WbMapRegister *const *r;
    guint baud;
} Group;

static double group_time(guint mask, gpointer data)
{
    const Group *g = data;
    guint first = G_MAXUINT, end = 0, k = 0;
    for (guint bits = mask; bits; bits >>= 1, k++)
        if (bits & 1) {
            first = MIN(first, g->r[k]->address);
            end = MAX(end, g->r[k]->address + g->r[k]->size);
        }
    return span_time(g->map, g->r[0]->table, first, end, g->baud);
}

static double minimum_partitions(const WbMap *map, const WbMapRegister *const *r, guint n, guint baud)
{
    Group g = {map, r, baud};
    return wbt_min_over_partitions(n, group_time, &g);
}

/* Shortest path from register 0 to past register n-1, an edge i -> j for
 * every run r[i..j) that one request can read (Dijkstra; every path is a
 * partition into runs). */
static double minimum_runs(const WbMap *map, const WbMapRegister *const *r, guint n, guint baud)
{
    double *dist = g_new(double, n + 1);
    gboolean *done = g_new0(gboolean, n + 1);
    for (guint i = 0; i <= n; i++)
        dist[i] = INFINITY;
    dist[0] = 0;
    for (;;) {
        guint u = n + 1;
        for (guint i = 0; i <= n; i++)
            if (!done[i] && isfinite(dist[i]) && (u > n || dist[i] < dist[u]))
                u = i;
        if (u > n || u == n)
            break;
        done[u] = TRUE;
        for (guint j = u + 1; j <= n; j++) {
            double t = span_time(map, r[u]->table, r[u]->address, r[j - 1]->address + r[j - 1]->size, baud);
            if (dist[u] + t < dist[j])
                dist[j] = dist[u] + t;
        }
    }
    double result = dist[n];
    g_free(dist);
    g_free(done);
    return result;
}

/* ---- one row ------------------------------------------------------------ */

static void row(const char *label, const WbMap *map)
{
    guint baud = wb_map_get_baud(map) ? wb_map_get_baud(map) : 9600;
    g_autoptr(GPtrArray) regs = g_ptr_array_new();
    for (guint i = 0; i < wb_map_get_n_registers(map); i++) {
        const WbMapRegister *r = wb_map_get_register(map, i);
        if (r->read_fcs)
            g_ptr_array_add(regs, (gpointer)r);
    }
    const WbMapRegister *const *r = (const WbMapRegister *const *)regs->pdata;

    /* baseline: one register per request */
    double single = 0;
    for (guint i = 0; i < regs->len; i++)
        single += span_time(map, r[i]->table, r[i]->address, r[i]->address + r[i]->size, baud);

    g_autoptr(GError) error = NULL;
    gint64 t0 = g_get_monotonic_time();
    WbReadPlan *plan = wb_read_plan_new(map, r, regs->len, baud, &error);
    gint64 planning_us = g_get_monotonic_time() - t0;
    if (!plan)
        g_error("%s: %s", label, error->message);

    /* the minimum, table by table (registers are sorted by table, address) */
    double minimum = 0;
    gboolean all_partitions = TRUE;
    for (guint i = 0; i < regs->len;) {
        guint j = i;
        while (j < regs->len && r[j]->table == r[i]->table)
            j++;
        if (j - i <= 14) {
            minimum += minimum_partitions(map, r + i, j - i, baud);
        } else {
            minimum += minimum_runs(map, r + i, j - i, baud);
            all_partitions = FALSE;
        }
        i = j;
    }
    double planned = wb_read_plan_get_cycle_time(plan);
    printf("%-34s %6u %5u %9.3f s %5u %9.3f s %9.3f s  %-10s %6.2fx %6" G_GINT64_FORMAT " us\n", label, baud,
           regs->len, single, wb_read_plan_get_n_requests(plan), planned, minimum,
           all_partitions ? "partitions" : "runs", single / planned, planning_us);
    if (planned > minimum + 1e-9)
        printf("  ^ the planner is %.6f s above the minimum\n", planned - minimum);
    wb_read_plan_free(plan);
}

static int compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
    const char *src = g_getenv("WB_TEST_SRCDIR");
    if (!src)
        g_error("WB_TEST_SRCDIR is not set (run with meson test --benchmark)");
    g_autofree char *dir = g_build_filename(src, "data", "devices", NULL);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(d);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(d)))
        if (g_str_has_suffix(name, ".map"))
            g_ptr_array_add(names, g_strdup(name));
    g_ptr_array_sort(names, compare_names);

    printf("Read cycle for all readable registers of each shipped map (model: wb_modbus_request_time)\n");
    printf("%-34s %6s %5s %11s %5s %11s %11s  %-10s %7s %9s\n", "map", "baud", "regs", "one/request", "reqs",
           "planner", "minimum", "minimum by", "speedup", "planning");
    for (guint i = 0; i < names->len; i++) {
        g_autofree char *path = g_build_filename(dir, g_ptr_array_index(names, i), NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(WbMap) map = wb_map_load_file(path, &error);
        if (!map)
            g_error("%s", error->message);
        row(wb_map_get_name(map), map);
        if (g_str_has_prefix(wb_map_get_name(map), "growatt-")) {
            /* the same map without the 850 ms pause */
            g_autofree char *text = NULL;
            g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
            g_autoptr(GString) s = g_string_new(text);
            g_assert_cmpuint(g_string_replace(s, "min-delay = 850ms", "min-delay = 0", 1), ==, 1);
            g_autoptr(WbMap) fast = wb_map_parse_text(path, s->str, &error);
            g_assert_no_error(error);
            g_autofree char *label = g_strconcat(wb_map_get_name(map), " (min-delay 0)", NULL);
            row(label, fast);
        }
    }
    return 0;
}
