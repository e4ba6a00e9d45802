"""The customer's payment page: what is owed now, paying it, sending a receipt, the payment history."""
