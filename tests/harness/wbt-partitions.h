/* Exhaustive search for the tests and benchmarks that check the read
 * planner: the least total cost of grouping n items (n <= 14) into
 * requests, over every set partition, by dynamic programming over subsets
 * (nothing is pruned).  Header-only: test-plan and bench-plan link
 * libwattbridge, not the harness. */
#pragma once

#include <glib.h>
#include <math.h>

/* @cost: the cost of one request reading exactly the items in @mask (bit
 * k = item k), INFINITY when no request can.  Returns the minimum over all
 * partitions, INFINITY when none is possible. */
static inline double wbt_min_over_partitions(guint n, double (*cost)(guint mask, gpointer data), gpointer data)
{
    g_assert(n >= 1 && n <= 14);
    guint full = (1u << n) - 1;
    double *one = g_new(double, full + 1);
    double *best = g_new(double, full + 1);
    for (guint s = 1; s <= full; s++)
        one[s] = cost(s, data);
    best[0] = 0;
    for (guint s = 1; s <= full; s++) {
        guint low = s & -s;
        best[s] = INFINITY;
        /* every subset of s that holds its lowest item is one request */
        for (guint sub = s; sub; sub = (sub - 1) & s)
            if ((sub & low) && one[sub] + best[s ^ sub] < best[s])
                best[s] = one[sub] + best[s ^ sub];
    }
    double result = best[full];
    g_free(one);
    g_free(best);
    return result;
}
