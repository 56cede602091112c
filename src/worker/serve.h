/*
 * serve.h - the worker's frame loop: announce, specialize on LOAD, then
 * serve INVOKE frames one at a time until the daemon closes the channel.
 * Runs only in sofaas-worker.
 */
#ifndef SF_WORKER_SERVE_H
#define SF_WORKER_SERVE_H

/* Never returns normally; returns the process exit status on EOF/error. */
int sf_worker_serve(int fd);

#endif
