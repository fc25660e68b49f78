# lme4's part of bench_latency.py.
#
# Usage:
#   Rscript lme4_latency.R session DATA_DIR OUT.tsv
#   Rscript lme4_latency.R scale DATA.csv REPS OUT.tsv
#
# session: library(lme4), read the session's CSVs, then fit the eight models one after
# another, each lmer() call and the printing of its summary timed (elapsed seconds), and write
# the epoch time at the end of the eighth model (bench_latency.py subtracts the time it
# launched Rscript: the total includes R's start-up). Then the crossed-slopes model, twice.
# scale: read the CSV, then library(lme4) + first lmer() (cold), then REPS more fits (warm).
# Output: tab-separated lines "MODEL key fit summary loglik error", "IMPORT s", "END epoch",
# and for scale "IMPORT", "FIRST_FIT", "COLD", "WARM s ...", "LLF".
args <- commandArgs(trailingOnly = TRUE)
mode <- args[1]
now <- function() as.numeric(Sys.time())

read_data <- function(dir, name, factors) {
  d <- read.csv(file.path(dir, paste0(name, ".csv")))
  for (f in factors) d[[f]] <- factor(as.character(d[[f]]))
  d
}

timed_model <- function(tag, key, formula, data, reml, out) {
  t0 <- now()
  res <- tryCatch(
    {
      m <- lmer(formula, data = data, REML = reml)
      t1 <- now()
      cat(sprintf("\n===== lme4: %s =====\n", key))
      print(summary(m))
      t2 <- now()
      sprintf("%s\t%s\t%.6f\t%.6f\t%.12f\t", tag, key, t1 - t0, t2 - t1, as.numeric(logLik(m)))
    },
    error = function(e) {
      sprintf("%s\t%s\t\t\t\t%s", tag, key, gsub("[\t\n]", " ", conditionMessage(e)))
    }
  )
  cat(res, "\n", file = out, sep = "", append = TRUE)
}

if (mode == "session") {
  dir <- args[2]
  out <- args[3]
  t0 <- now()
  suppressPackageStartupMessages(library(lme4))
  t_import <- now() - t0
  d <- list(
    sleepstudy = read_data(dir, "sleepstudy", "Subject"),
    re3 = read_data(dir, "re3", "g"),
    dyestuff = read_data(dir, "dyestuff", "Batch"),
    penicillin = read_data(dir, "penicillin", c("plate", "sample")),
    pastes = read_data(dir, "pastes", c("batch", "cask", "sample")),
    orthodont = read_data(dir, "orthodont", c("Subject", "Sex")),
    mathachieve = read_data(dir, "mathachieve", c("School", "Minority", "Sex"))
  )
  cat("", file = out)
  timed_model("MODEL", "sleepstudy", Reaction ~ Days + (Days | Subject), d$sleepstudy, TRUE, out)
  timed_model("MODEL", "re3", y ~ x1 + x2 + (1 + x1 + x2 | g), d$re3, TRUE, out)
  timed_model("MODEL", "dyestuff", Yield ~ 1 + (1 | Batch), d$dyestuff, TRUE, out)
  timed_model(
    "MODEL", "penicillin", diameter ~ 1 + (1 | plate) + (1 | sample), d$penicillin, TRUE, out
  )
  timed_model("MODEL", "pastes", strength ~ 1 + (1 | batch / cask), d$pastes, TRUE, out)
  timed_model("MODEL", "orthodont", distance ~ age + Sex + (1 | Subject), d$orthodont, TRUE, out)
  timed_model(
    "MODEL", "mathachieve", MathAch ~ SES + MEANSES + (SES | School), d$mathachieve, TRUE, out
  )
  timed_model(
    "MODEL", "sleepstudy_ml", Reaction ~ Days + (Days | Subject), d$sleepstudy, FALSE, out
  )
  end <- now()
  cat(sprintf("IMPORT\t%.6f\nEND\t%.6f\n", t_import, end), file = out, append = TRUE)
  crossed <- read_data(dir, "crossed", c("subj", "item"))
  timed_model("CROSSED", "first", y ~ x + (x | subj) + (1 | item), crossed, TRUE, out)
  timed_model("CROSSED", "second", y ~ x + (x | subj) + (1 | item), crossed, TRUE, out)
} else if (mode == "scale") {
  path <- args[2]
  reps <- as.integer(args[3])
  out <- args[4]
  d <- read.csv(path, colClasses = c("numeric", "numeric", "character"))
  d$g <- factor(d$g)
  t0 <- now()
  suppressPackageStartupMessages(library(lme4))
  t1 <- now()
  m <- lmer(y ~ x + (x | g), data = d, REML = TRUE)
  t2 <- now()
  warm <- numeric(reps)
  for (i in seq_len(reps)) {
    warm[i] <- system.time(m <- lmer(y ~ x + (x | g), data = d, REML = TRUE))[["elapsed"]]
  }
  cat(
    sprintf("IMPORT\t%.6f\nFIRST_FIT\t%.6f\nCOLD\t%.6f\n", t1 - t0, t2 - t1, t2 - t0),
    sprintf("WARM\t%s\n", paste(sprintf("%.6f", warm), collapse = "\t")),
    sprintf("LLF\t%.12f\n", as.numeric(logLik(m))),
    file = out, sep = ""
  )
} else {
  stop("usage: lme4_latency.R session DATA_DIR OUT | scale DATA.csv REPS OUT")
}
