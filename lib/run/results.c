/* results.c - results.jsonl: one record a line, appended atomically (the
 * records are written and read by json.c). */
#include "results.h"
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST)
        return -1;
    return 0;
}

fa4cp_status fa4cp_results_append(const char *dir, const char *line)
{
    char path[4096];
    if (mkdir_p(dir))
        return fa4cp_set_error(FA4CP_ERR_IO, "cannot create the output directory %s: %s", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/results.jsonl", dir);
    size_t n = strlen(line);
    char *buf = malloc(n + 2);
    if (!buf)
        return fa4cp_set_error(FA4CP_ERR_NOMEM, "out of memory for a result line");
    memcpy(buf, line, n);
    buf[n] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) {
        free(buf);
        return fa4cp_set_error(FA4CP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    ssize_t wr = write(fd, buf, n + 1);
    int werr = errno;
    free(buf);
    if (wr != (ssize_t)(n + 1)) {
        close(fd);
        return fa4cp_set_error(FA4CP_ERR_IO, "short write to %s: %s", path, wr < 0 ? strerror(werr) : "disk full?");
    }
    fsync(fd);
    if (close(fd))
        return fa4cp_set_error(FA4CP_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    return FA4CP_OK;
}
