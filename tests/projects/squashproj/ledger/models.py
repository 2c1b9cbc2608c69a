from django.db import models


class Account(models.Model):
    name = models.CharField(max_length=100)
    note = models.CharField(max_length=100, default="")
    flag = models.BooleanField(default=False)


class Entry(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    amount = models.IntegerField(default=0)
