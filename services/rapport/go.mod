module github.com/rapporthq/rapport/services/rapport

go 1.26.8

require github.com/rapporthq/rapport/pkg v0.0.0

replace github.com/rapporthq/rapport/pkg => ../../pkg
