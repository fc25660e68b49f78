# Fit y ~ x + (x | g) by REML with lme4 on a CSV written by bench_core.py and print the timing.
#
# Usage: Rscript lme4_fit.R DATA.csv REPS
# Only the lmer() call is timed (system.time, elapsed seconds); reading the CSV is not.
# One small warm-up fit first, so that loading lme4's code is not charged to the first rep.
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
path <- args[1]
reps <- as.integer(args[2])
d <- read.csv(path, colClasses = c("numeric", "numeric", "character"))
d$g <- factor(d$g)
warm <- d[d$g %in% levels(d$g)[1:50], ]
warm$g <- droplevels(warm$g)
invisible(lmer(y ~ x + (x | g), data = warm, REML = TRUE))
times <- numeric(reps)
for (i in seq_len(reps)) {
  times[i] <- system.time(m <- lmer(y ~ x + (x | g), data = d, REML = TRUE))[["elapsed"]]
}
vc <- as.data.frame(VarCorr(m))
cat(sprintf("TIMES %s\n", paste(sprintf("%.4f", times), collapse = " ")))
cat(sprintf("LOGLIK %.12f\n", as.numeric(logLik(m))))
cat(sprintf("BETA %s\n", paste(sprintf("%.12g", fixef(m)), collapse = " ")))
cat(sprintf("VCOV %s\n", paste(sprintf("%.12g", vc$vcov), collapse = " ")))
cat(sprintf("SINGULAR %s\n", isSingular(m)))
